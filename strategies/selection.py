"""Which epoch (or weight-space candidate) a phase's result is: the one selection picks on the selection set."""
from __future__ import annotations


def select_epoch(epochs: list[dict], selection_set: str) -> dict | None:
    """The epoch (or weight-space candidate) with the best accuracy on the selection set (earliest on ties),
    never a diverged one; None when every epoch diverged."""
    key = f"acc/{selection_set}"
    candidates = [row for row in epochs if not row.get("diverged")]
    return max(candidates, key=lambda row: (row[key], -row["epoch"])) if candidates else None
