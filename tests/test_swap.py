"""Ren et al.'s Figure 3 on a real (tiny) head-probing sweep on digits: heads and backbones exchanged."""
import shutil

import pandas as pd
import pytest
import torch

from lpft_bench.analysis.report import write_report
from lpft_bench.analysis.swap import fine_tuned_weights
from lpft_bench.cli import main
from lpft_bench.engine import Job, RunContext, prepare_job, run_job
from lpft_bench.engine.identity import phase_key
from lpft_bench.engine.store import Store
from lpft_bench.strategies import get_strategy
from lpft_bench.strategies.posthoc import evaluate

TAUS = (0, 1, 2)
pytestmark = pytest.mark.slow


def _job(tau):
    return Job("digits", "hp-ft", seed=0, hparams={"hp_epochs": tau, "epochs": 1})


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    store = tmp_path_factory.mktemp("swap") / "store"
    ctx = RunContext(out=store, accelerator="cpu")
    records = {tau: run_job(_job(tau), ctx) for tau in TAUS}
    assert main(["swap", "--store", str(store)]) == 0
    return store, ctx, records, pd.read_csv(store / "report" / "swap.csv")


def test_every_backbone_meets_every_head_and_the_diagonal_is_each_jobs_recorded_accuracy(sweep):
    _, _, records, swaps = sweep
    assert sorted(zip(swaps["backbone_tau"], swaps["head_tau"])) == [(i, j) for i in TAUS for j in TAUS]
    diagonal = swaps[swaps["backbone_tau"] == swaps["head_tau"]].set_index("backbone_tau")
    for tau, record in records.items():
        recorded = 100.0 * record["final"][record["selection"]["set"]]
        assert diagonal.loc[tau, "val_acc"] == pytest.approx(recorded, abs=1e-6)
        assert diagonal.loc[tau, "recorded_val_acc"] == pytest.approx(recorded, abs=1e-6)
    assert swaps.loc[swaps["backbone_tau"] != swaps["head_tau"], "recorded_val_acc"].isna().all()
    assert swaps[["train_acc", "val_acc"]].stack().between(0, 100).all()


def test_an_exchanged_model_is_backbone_i_with_head_j(sweep):
    """Rebuilt here as a whole network from the two jobs' stored weights and evaluated end to end."""
    store, ctx, records, swaps = sweep
    backbone_of = fine_tuned_weights(store, records[0])
    head_of = fine_tuned_weights(store, records[2])
    assert not torch.equal(backbone_of["head.weight"], head_of["head.weight"])
    prepared = prepare_job(_job(0), ctx)
    state = {k: (head_of if k.startswith("head.") else backbone_of)[k] for k in prepared.model.state_dict()}
    prepared.model.load_state_dict(state)
    dm = prepared.datamodule
    selection = [s for s in dm.eval_sets if s.name == dm.selection_set]
    expected = 100.0 * evaluate(prepared.model, selection, dm.eval_loader, torch.device("cpu"))[dm.selection_set]
    row = swaps[(swaps["backbone_tau"] == 0) & (swaps["head_tau"] == 2)].iloc[0]
    assert row["val_acc"] == pytest.approx(expected, abs=1e-6)


def test_the_report_shows_figure_3_and_figure_4(sweep):
    store, _, _, _ = sweep
    report = write_report(store)
    text = report.read_text()
    for png in ("swap_digits-digits-resnet-hp-ft-0.png", "head_probing_digits.png",
                "head_probing_vs_hp_acc_digits.png"):
        assert f"]({png})" in text and (report.parent / png).exists()
        assert not pd.read_csv(report.parent / png.replace(".png", ".csv")).empty
    assert "largest difference 0 points" in text
    points = pd.read_csv(report.parent / "head_probing_vs_hp_acc_digits.csv")
    assert list(points["tau"]) == list(TAUS) and points["hp_train_acc_mean"].between(0, 100).all()


def test_missing_fine_tuned_weights_are_one_line_naming_the_job(sweep, tmp_path, capsys):
    store, _, records, _ = sweep
    copy = tmp_path / "store"
    shutil.copytree(store, copy)
    job = _job(1)
    phases = get_strategy(job.strategy).phases(job.hparams)
    shutil.rmtree(Store(copy).phase_dir(phase_key(job, phases, len(phases) - 1)))
    assert main(["swap", "--store", str(copy)]) == 2
    assert f"job {records[1]['job_id']}" in capsys.readouterr().err


def test_a_store_without_a_sweep_is_a_usage_error(tmp_path, capsys):
    (tmp_path / "jobs").mkdir()
    assert main(["swap", "--store", str(tmp_path)]) == 2
    assert "no finished head-probing sweep" in capsys.readouterr().err
