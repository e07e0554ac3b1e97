"""Phase kinds, registered by the name a `Phase.trains` holds: each kind says how a phase of it runs.

Adding a kind (a TPGM projection, a new weight-space step) is one class in a file of its own plus one
`register_kind` line; `base.py` holds what a kind is and the registry."""
from __future__ import annotations

from lpft_bench.strategies.selection import select_epoch

from . import gradient, probe, weight_space  # noqa: F401 - each registers its kinds
from .base import (PHASE_KINDS, PhaseContext, PhaseFiles, PhaseKind, cpu_state, head_state, phase_kind, register_kind,
                   rng_states, set_rng_states)

__all__ = ["PHASE_KINDS", "PhaseContext", "PhaseFiles", "PhaseKind", "cpu_state", "head_state", "phase_kind", "register_kind",
           "rng_states", "select_epoch", "set_rng_states"]
