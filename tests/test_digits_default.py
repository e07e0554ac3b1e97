"""The default digits benchmark: OOD sets of every held-out digit at fixed angles, the same for every job, and
the LP cells the quickstart reports, pinned (deterministic given the shipped weights)."""
import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch

from lpft_bench.analysis.tables import runs_frame, select_hparams, summary_table, table_cells
from lpft_bench.analysis.claims import with_oracle
from lpft_bench.datamodules import benchmark_meaning, build_datamodule
from lpft_bench.datamodules.digits import OOD_ANGLES, rotate
from lpft_bench.engine import RunContext, run_job
from lpft_bench.suites import SUITES

GOLDEN_LP = Path(__file__).parent / "golden" / "quickstart_lp.json"


def _sets(seed):
    dm = build_datamodule("digits", seed=seed)
    dm.setup("fit")
    return {s.name: s for s in dm.eval_sets}


def test_ood_sets_hold_every_test_digit_at_plus_and_minus_a_fixed_angle_for_every_seed():
    sets, other_seed = _sets(0), _sets(1)
    test_x, test_y = sets["id_test"].dataset.tensors
    n = len(test_y)
    for name, angle in OOD_ANGLES.items():
        x, y = sets[name].dataset.tensors
        assert len(y) == 2 * n and torch.equal(y, test_y.repeat(2))
        np.testing.assert_array_equal(sets[name].groups, np.tile(np.arange(n), 2))
        # Normalisation (x - 0.5) / 0.5 maps the zero padding of a rotation to -1.
        torch.testing.assert_close(x[n:], rotate(test_x * 0.5 + 0.5, torch.full((n,), -angle)) * 2 - 1)
        assert torch.equal(x, other_seed[name].dataset.tensors[0])
    assert benchmark_meaning("digits", {}) == {"data_version": 1} and benchmark_meaning("digits-toy", {}) == {}


def _lp_cells(store: Path) -> dict:
    records = [json.loads(p.read_text()) for p in sorted(store.glob("jobs/*/record.json"))]
    selected = select_hparams(runs_frame(records))
    cells = {}
    for split, frame in (("id", selected), ("ood", with_oracle(selected, records))):
        for _, cell in table_cells(summary_table(frame, split)).iterrows():
            cells[f"{cell['strategy']} {cell['column']}"] = [round(cell["mean"], 2), round(cell["ci90"], 2)]
    return cells


@pytest.mark.slow
def test_quickstart_lp_cells_and_oracle_are_pinned(tmp_path):
    """LP is closed-form on the shipped backbone's features: its cells are exact, not merely within an interval."""
    ctx = RunContext(out=tmp_path)
    for job in SUITES["quickstart"].expand(strategies=["lp"]):
        run_job(job, ctx)
    cells = _lp_cells(tmp_path)
    if os.environ.get("LPFT_BENCH_UPDATE_GOLDEN"):
        GOLDEN_LP.write_text(json.dumps(cells, indent=1, sort_keys=True) + "\n")
    assert cells == json.loads(GOLDEN_LP.read_text())
