"""Phase kinds are a registry: a new kind is one class plus one registry line, and the engine runs it."""
import subprocess
from pathlib import Path

import pytest
import torch

from lpft_bench.engine import Job, RunContext, run_job
from lpft_bench.strategies import STRATEGIES, Phase, Strategy
from lpft_bench.strategies.kinds import PHASE_KINDS, PhaseKind, head_state, register_kind

REPO = Path(__file__).resolve().parents[1]


class ShrinkHead(PhaseKind):
    """A toy weight-space step: the head scaled by one half."""

    name = "shrink-head"

    def run(self, phase, context):
        with torch.no_grad():
            for parameter in context.model.head.parameters():
                parameter.mul_(0.5)
        row = {"epoch": 0, **{f"acc/{s.name}": 0.0 for s in context.datamodule.eval_sets}}
        return {"name": phase.name, "phase": phase.describe(), "epochs": [row], "end": head_state(context.model.head)}


def test_a_new_phase_kind_is_one_class_and_one_registry_line(tmp_path, monkeypatch):
    monkeypatch.setitem(STRATEGIES, "lp-shrink", Strategy(
        "lp-shrink", "LP, then the head halved", lambda hp: [STRATEGIES["lp"].phases(hp)[0], Phase("shrink", "shrink-head")],
        defaults=STRATEGIES["lp"].defaults))
    register_kind(ShrinkHead())
    try:
        ctx = RunContext(out=tmp_path, accelerator="cpu")
        lp = run_job(Job("digits", "lp", 0, benchmark_options={"subset": 60}), ctx)
        shrunk = run_job(Job("digits", "lp-shrink", 0, benchmark_options={"subset": 60}), ctx)
    finally:
        del PHASE_KINDS["shrink-head"]
    assert shrunk["phases"][0]["reused"], "the LP phase is shared with the lp job through the phase store"
    assert shrunk["phases"][1]["end"]["head_norm"] == pytest.approx(lp["phases"][0]["end"]["head_norm"] / 2, rel=1e-6)


def test_a_kind_is_registered_once_and_phases_name_known_kinds():
    with pytest.raises(ValueError, match="registered twice"):
        register_kind(PHASE_KINDS["all"])
    with pytest.raises(ValueError, match="unknown phase kind"):
        Phase("x", trains="no-such-kind")
    with pytest.raises(ValueError, match="alphas belongs to trains='weight-interpolation'"):
        Phase("ft", trains="all", epochs=1, alphas=(0.5,))


def test_no_phase_kind_is_dispatched_by_name_outside_the_kinds():
    """The kinds say how a phase runs; nothing else compares `trains` against a kind's name."""
    found = subprocess.run(["grep", "-rnE", r"trains (==|!=|in |not in )", "benchmark", "strategies", "datamodules",
                            "--include=*.py"], cwd=REPO, capture_output=True, text=True).stdout
    assert found == "", found


def test_a_probe_setting_is_part_of_the_identity_so_a_changed_one_never_reuses_a_stale_result(monkeypatch):
    """The LP's standardisation, solver and tie rule come from the benchmark's mode, not from the phase's fields:
    the kind adds them to the job's meaning and its phase keys."""
    from dataclasses import replace

    from lpft_bench.engine import phase_key
    from lpft_bench.strategies import get_strategy
    from lpft_bench.strategies.linear_probe import PROBE_SETTINGS

    job = Job("digits", "lp-ft", 0)
    phases = get_strategy("lp-ft").phases()
    before = (job.id, phase_key(job, phases, 0), Job("digits", "ft", 0).id)
    monkeypatch.setitem(PROBE_SETTINGS, "clean", replace(PROBE_SETTINGS["clean"], max_iter=50))
    job = Job("digits", "lp-ft", 0)
    assert job.id != before[0] and phase_key(job, phases, 0) != before[1]
    assert Job("digits", "ft", 0).id == before[2], "a job without a probe keeps its identity"


def test_the_selected_epochs_weights_are_kept_and_calibration_uses_them(tmp_path):
    """SelectedWeights keeps the weights of the epoch selection picks (never a later, worse one); calibration
    then measures that model, the one whose accuracy the job reports."""
    from types import SimpleNamespace

    from safetensors.torch import load_file

    from lpft_bench.engine import prepare_job
    from lpft_bench.engine.execution import calibrate
    from lpft_bench.strategies.callbacks import EpochRecorder, SelectedWeights

    model = torch.nn.Linear(2, 2)
    recorder = EpochRecorder()
    keeper = SelectedWeights(tmp_path, recorder, "id_val")
    for epoch, accuracy in enumerate([0.5, 0.9, 0.7, 0.9]):
        with torch.no_grad():
            model.weight.fill_(epoch)
        recorder.epochs.append({"epoch": epoch, "acc/id_val": accuracy})
        keeper.on_train_epoch_end(SimpleNamespace(is_global_zero=True, current_epoch=epoch), SimpleNamespace(model=model))
        if epoch == 1:  # the resume checkpoint of epoch 1 holds them: nothing beside it
            keeper.flush(epoch), keeper.keep_only_flushed()
            assert not list(tmp_path.glob("selected-*"))
        if epoch == 2:  # that of epoch 2 does not: they are written beside it
            keeper.flush(epoch), keeper.keep_only_flushed()
    assert keeper.weights_of(1)["weight"].eq(1).all(), "epoch 1: best, earliest on ties"
    assert [p.name for p in tmp_path.glob("selected-*")] == ["selected-1.safetensors"]
    assert load_file(str(tmp_path / "selected-1.safetensors"))["weight"].eq(1).all()
    # A phase resumed from that checkpoint has them only on disk.
    resumed = SelectedWeights(tmp_path, recorder, "id_val")
    assert resumed.weights_of(1)["weight"].eq(1).all()
    with pytest.raises(RuntimeError, match="selected epoch 3"):
        resumed.weights_of(3)

    prepared = prepare_job(Job("digits", "lp", 0, benchmark_options={"subset": 60}), RunContext(out=tmp_path))
    as_built = calibrate(prepared, torch.device("cpu"))
    state = {k: v.clone() for k, v in prepared.model.state_dict().items()}
    state["head.weight"].zero_(), state["head.bias"].zero_()
    prepared.selected_state = state
    constant = calibrate(prepared, torch.device("cpu"))
    assert constant["sets"]["id_test"]["acc"] != as_built["sets"]["id_test"]["acc"]
    assert constant["sets"]["id_test"]["acc"] < 0.2, "a zero head predicts one class: the selected state was used"
