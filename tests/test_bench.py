"""`lpft-bench bench --tiny`: every measurement runs and lands in the CSV. Timings are never asserted: they
depend on the machine and on whatever else runs on it."""
import math

import pandas as pd

from lpft_bench.analysis.bench import format_bench, run_bench


def test_tiny_bench_writes_all_five_measurements_with_finite_numbers(tmp_path):
    out = tmp_path / "bench" / "bench.csv"
    returned = run_bench(out, size="tiny")
    written = pd.read_csv(out, dtype={"id": str})
    assert len(written) == len(returned)
    assert {row_id[0] for row_id in written["id"]} == {"1", "2", "3", "4", "5"}
    for column in ("ours", "reference", "ratio"):
        assert all(math.isfinite(value) for value in written[column]), column
    assert set(written["met"].fillna("")) <= {"met", "not met", ""}
    table = format_bench(returned)
    assert all(row_id in table for row_id in written["id"])
