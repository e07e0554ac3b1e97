"""Each mechanism of the head-probing strategies, and the metrics both papers reason about."""
import json
import math
import os
import signal
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from lpft_bench.engine import Job, RunContext, prepare_job, run_job, run_phases
from lpft_bench.engine.execution import calibrate
from lpft_bench.engine.store_files import state_digest
from lpft_bench.faults import FAULT_ENV
from lpft_bench.strategies.kinds.gradient import reinitialise
from lpft_bench.strategies import callbacks, get_strategy
from lpft_bench.strategies.metrics import average_initial_energy, feature_change, parameter_distance
from lpft_bench.strategies.module import AdaptationModule, BatchMean
from lpft_bench.strategies.kinds import phase_kind


def _ctx(tmp_path):
    return RunContext(out=tmp_path / "store", accelerator="cpu")


def _backbone_after(ctx, job, phase_prefix, source):
    """The backbone as the store saved it after the phase whose key starts with `phase_prefix` (e.g. "0-hp"); a
    head-only result names its backbone by digest, which must be that of `source` (the backbone it started on)."""
    (phase_dir,) = (ctx.out / "phases").glob(f"{phase_prefix}-*")
    if (phase_dir / "head.safetensors").exists():
        assert json.loads((phase_dir / "record.json").read_text())["backbone_sha256"] == state_digest(source)
        return source
    state = load_file(str(phase_dir / "model.safetensors"))
    return {k.removeprefix("backbone."): v for k, v in state.items() if k.startswith("backbone.")}


def test_average_initial_energy_by_hand():
    logits = torch.tensor([[0.0, 0.0], [math.log(3.0), 0.0]])  # softmax: [.5, .5] and [.75, .25]
    labels = torch.tensor([0, 1])
    expected = (math.sqrt(0.5**2 + 0.5**2) + math.sqrt(0.75**2 + 0.75**2)) / 2
    assert average_initial_energy(logits, labels) == pytest.approx(expected)


def test_feature_change_and_parameter_distance_by_hand():
    before = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    after = torch.tensor([[1.0, 1.0], [0.0, 2.0]])
    change = feature_change(before, after)
    assert change["distance"] == pytest.approx((1.0 + 0.0) / 2)
    assert change["dot"] == pytest.approx((1.0 + 4.0) / 2)
    assert change["cosine"] == pytest.approx((1 / math.sqrt(2) + 1.0) / 2)
    assert change["norm"] == pytest.approx((math.sqrt(2) + 2.0) / 2)
    assert change["norm_before"] == pytest.approx(1.5)
    reference = {"a": torch.zeros(2), "b": torch.ones(1)}
    assert parameter_distance(reference, {"a": torch.tensor([3.0, 0.0]), "b": torch.tensor([5.0])}) == pytest.approx(5.0)


def test_the_epoch_training_loss_is_the_mean_over_examples_and_stays_nan_once_nan():
    mean = BatchMean()
    mean.update(torch.tensor(1.0), 3)
    mean.update(torch.tensor(3.0), 1)  # a short last batch weighs by its examples
    assert float(mean.compute()) == 1.5
    mean.update(torch.tensor(float("nan")), 2)
    assert math.isnan(float(mean.compute()))


def test_head_probing_leaves_the_backbone_untouched_and_ft_starts_from_that_head(tmp_path):
    ctx = _ctx(tmp_path)
    job = Job("digits", "hp-ft", seed=0, hparams={"hp_epochs": 3, "epochs": 1})
    prepared = prepare_job(job, ctx)
    pretrained = {k: v.clone() for k, v in prepared.model.backbone.state_dict().items()}
    hp, ft = run_phases(job, prepared, ctx)[0]
    after_hp = _backbone_after(ctx, job, "0-hp", pretrained)
    assert all(torch.equal(pretrained[k], after_hp[k]) for k in pretrained)  # BatchNorm statistics included
    assert hp["end"]["head_sha256"] != hp["start"]["head_sha256"]
    assert ft["start"]["head_sha256"] == hp["end"]["head_sha256"]
    assert ft["start"]["train_acc"] > 0.5  # the probed head, not a fresh one
    assert len(hp["epochs"]) == 1 and hp["epochs"][0]["epoch"] == 2  # evaluated once, at τ


def test_the_start_diagnostics_read_from_the_probes_feature_cache_agree_with_a_pass_of_their_own(tmp_path):
    job = Job("digits", "ft", seed=0, hparams={"epochs": 1})
    alone = run_job(job, _ctx(tmp_path / "alone"))  # no feature cache: the training probe is passed through
    ctx = _ctx(tmp_path / "after-lp")
    run_job(Job("digits", "lp", seed=0), ctx)  # caches the training set's eval-view features
    calls = []
    original = callbacks.probe_outputs
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(callbacks, "probe_outputs", lambda *args: calls.append(args) or original(*args))
        after_lp = run_job(job, ctx)
    assert calls == []  # the start came from the cache: no pass over the training probe
    start, cached_start = alone["phases"][0]["start"], after_lp["phases"][0]["start"]
    for name in ("train_acc", "train_loss", "average_initial_energy", "head_norm"):
        assert cached_start[name] == pytest.approx(start[name], rel=1e-5, abs=1e-6), name


def test_the_probes_calibration_from_its_head_on_cached_features_is_that_of_a_pass_over_the_images(tmp_path):
    """A job whose last phase is the probe is calibrated on its head applied to the cached features, bit for bit
    what a forward pass over every set's images gives (the pass a reused phase still makes)."""
    ctx = _ctx(tmp_path)
    job = Job("digits", "lp", seed=0, benchmark_options={"subset": 60})
    record = run_job(job, ctx)
    prepared = prepare_job(job, ctx)
    run_phases(job, prepared, ctx)  # the stored phase, reused: no outputs of its own
    assert prepared.final_outputs is None
    assert calibrate(prepared, torch.device("cpu")) == record["calibration"]


def test_tau_zero_is_exactly_fine_tuning(tmp_path):
    assert get_strategy("hp-ft").phases({"hp_epochs": 0}) == get_strategy("ft").phases()
    # Separate stores: the same phases would otherwise be shared, not trained twice.
    ft = run_job(Job("digits", "ft", seed=3, hparams={"epochs": 1}), _ctx(tmp_path / "ft"))
    hp0 = run_job(Job("digits", "hp-ft", seed=3, hparams={"epochs": 1, "hp_epochs": 0}), _ctx(tmp_path / "hp0"))
    assert "reused" not in hp0["phases"][0]
    assert hp0["final"] == ft["final"]


def test_label_smoothing_is_active_only_in_head_probing(tmp_path):
    hp, ft = get_strategy("lshp-ft").phases({"hp_smoothing": 0.3})
    assert (hp.name, hp.label_smoothing, ft.name, ft.label_smoothing) == ("hp", 0.3, "ft", 0.0)
    prepared = prepare_job(Job("digits", "lshp-ft", seed=0), _ctx(tmp_path))
    x, y = prepared.datamodule.splits.train.tensors
    x, y = x[:32], y[:32]
    for phase in (hp, ft):
        module = AdaptationModule(prepared.model, phase, phase_kind(phase.trains).trainability,
                                  prepared.datamodule.eval_sets, 10)
        logits = prepared.model(x)
        expected = F.cross_entropy(logits, y, label_smoothing=phase.label_smoothing)
        assert torch.allclose(module.criterion(logits, y), expected)
    assert not torch.allclose(F.cross_entropy(logits, y, label_smoothing=0.3), F.cross_entropy(logits, y))
    with pytest.raises(ValueError, match="ft_smoothing < hp_smoothing"):
        get_strategy("lshp-ft").phases({"hp_smoothing": 0.1, "ft_smoothing": 0.2})


def test_batchnorm_eval_mode_keeps_running_statistics_during_ft(tmp_path):
    ctx = _ctx(tmp_path)
    job = Job("digits", "ft", seed=0, hparams={"epochs": 1, "batchnorm": "eval"})
    prepared = prepare_job(job, ctx)
    before = {k: v.clone() for k, v in prepared.model.backbone.state_dict().items()}
    run_phases(job, prepared, ctx)
    after = prepared.model.backbone.state_dict()
    statistics = [k for k in before if "running_" in k]
    weights = [k for k in before if k.endswith("weight")]
    assert statistics and all(torch.equal(before[k], after[k]) for k in statistics)
    assert any(not torch.equal(before[k], after[k]) for k in weights)


def test_reinit_changes_exactly_the_named_blocks(tmp_path):
    prepared = prepare_job(Job("digits", "reinit-ft", seed=0), _ctx(tmp_path))
    backbone = prepared.model.backbone
    before = {k: v.clone() for k, v in backbone.state_dict().items()}
    reinitialise(backbone, ("layer4.0",))
    after = backbone.state_dict()
    inside = [k for k in before if k.startswith("layer4.0.") and "num_batches" not in k]
    assert inside and all(not torch.equal(before[k], after[k]) for k in inside)
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith("layer4.0."))


def test_reinit_ft_trains_the_reinitialised_block_with_the_head_and_nothing_else(tmp_path):
    ctx = _ctx(tmp_path)
    job = Job("digits", "reinit-ft", seed=0, hparams={"hp_epochs": 1, "epochs": 1, "reinit_blocks": ("layer4.0",)})
    prepared = prepare_job(job, ctx)
    before = {k: v.clone() for k, v in prepared.model.backbone.state_dict().items()}
    run_phases(job, prepared, ctx)
    after_hp = _backbone_after(ctx, job, "0-hp", before)
    assert all(torch.equal(before[k], after_hp[k]) for k in before if not k.startswith("layer4.0."))
    assert all(not torch.equal(before[k], after_hp[k]) for k in before if k.startswith("layer4.0.") and "num_batches" not in k)


@pytest.mark.slow
def test_job_killed_mid_phase_resumes_in_that_phase_from_the_right_head(tmp_path):
    job = Job("digits", "hp-ft", seed=0, hparams={"hp_epochs": 1, "epochs": 2}, benchmark_options={"subset": 60})
    killed = RunContext(out=tmp_path / "killed", accelerator="cpu")
    command = [sys.executable, "-m", "lpft_bench.engine.execution", json.dumps(job.to_dict()), json.dumps(killed.to_dict())]
    # Killed at a named point, right after FT's first epoch checkpoint, however slow the machine is.
    env = {**os.environ, FAULT_ENV: "SIGKILL@1:epoch 1-ft"}
    process = subprocess.run(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert process.returncode == -signal.SIGKILL
    (last,) = (killed.job_dir(job) / "checkpoints").glob("1-ft-*/last.ckpt")
    assert torch.load(last, map_location="cpu", weights_only=True)["epoch"] == 0
    assert not (killed.job_dir(job) / "done").exists()

    resumed = run_job(job, killed)
    uninterrupted = run_job(job, RunContext(out=tmp_path / "clean", accelerator="cpu"))
    hp, ft = resumed["phases"]
    assert [p["name"] for p in resumed["phases"]] == ["hp", "ft"]
    assert [row["epoch"] for row in ft["epochs"]] == [0, 1]
    assert ft["start"]["head_sha256"] == hp["end"]["head_sha256"] == uninterrupted["phases"][0]["end"]["head_sha256"]
    assert ft["start"]["average_initial_energy"] == uninterrupted["phases"][1]["start"]["average_initial_energy"]
    for row, reference in zip(ft["epochs"], uninterrupted["phases"][1]["epochs"]):
        assert row["acc/id_val"] == pytest.approx(reference["acc/id_val"], abs=1e-6)
    assert resumed["final"] == pytest.approx(uninterrupted["final"], abs=1e-6)
