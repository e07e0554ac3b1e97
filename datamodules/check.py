"""What data is there: every set of every canonical benchmark, found or missing, counted against the reference."""
from __future__ import annotations

from dataclasses import dataclass

from .base import DatasetMissing
from .imagedata import ImageShiftDataModule
from .sources import source_lines


@dataclass(frozen=True)
class CheckRow:
    """One set of one benchmark. `images` is what the loader found (None when it could not read the set);
    `expected` is the full dataset's count from the reference (None where it gives none)."""

    benchmark: str
    eval_set: str
    split: str
    found: bool
    images: int | None
    expected: int | None
    path: str
    obtain: str
    problem: str | None = None

    @property
    def status(self) -> str:
        if not self.found:
            return "missing"
        if self.expected is not None and self.images != self.expected:
            return "found, count differs"
        return "found"


def check_benchmarks(data_root: str | None = None) -> list[CheckRow]:
    """Read every set of every canonical benchmark exactly as a run would (same roots, same loaders)."""
    from . import BENCHMARKS  # the registry imports this module's neighbours, not the other way round

    rows = []
    for name, benchmark in BENCHMARKS.items():
        if not (issubclass(benchmark, ImageShiftDataModule) and benchmark.canonical):
            continue
        datamodule = benchmark(data_root=data_root)
        root = datamodule.data_root_path()
        for spec in datamodule.sets:
            path = str(root / spec.path) if root is not None else f"<data root>/{spec.path}"
            try:
                images, problem = len(datamodule.read(spec)), None
            except DatasetMissing as error:
                images = None
                problem = error.problem if error.path == path else f"{error.problem}: {error.path}"
            rows.append(CheckRow(name, spec.name, spec.split, images is not None, images, spec.expected, path,
                                 spec.source.obtain, problem))
    return rows


def format_check(rows: list[CheckRow]) -> str:
    """A table of the rows, then what is missing (each problem once, with the sets it stops) and how to get it."""
    def count(value: int | None) -> str:
        return "-" if value is None else f"{value:,}"

    header = ("benchmark", "set", "split", "status", "images", "expected", "path")
    table = [header] + [(r.benchmark, r.eval_set, r.split, r.status, count(r.images), count(r.expected), r.path)
                        for r in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(header))]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(line, widths)).rstrip() for line in table]
    found = sum(r.found for r in rows)
    lines.append(f"\n{found} of {len(rows)} sets found.")
    problems: dict[tuple[str, str], list[str]] = {}
    for r in rows:
        if not r.found:
            problems.setdefault((r.problem or "missing", r.obtain), []).append(f"{r.benchmark}/{r.eval_set}")
    for (problem, obtain), sets in problems.items():
        lines += ["", f"{problem}", f"  needed by: {', '.join(sets)}", f"  obtain:    {obtain}"]
    lines += ["", "Sources (`lpft-bench data download NAME` fetches, verifies and unpacks them):"]
    lines += source_lines(list(dict.fromkeys(r.benchmark for r in rows)))
    return "\n".join(lines)
