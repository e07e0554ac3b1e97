"""The mechanisms of LP, FT and LP-FT on the offline digits benchmark, and job identity."""
import shutil

import numpy as np
import pytest
import torch

from lpft_bench.engine import Job, RunContext, prepare_job, run_job, run_phases
from lpft_bench.errors import UsageError
from lpft_bench.strategies.linear_probe import fit_logistic_path


def _ctx(tmp_path, **kwargs):
    return RunContext(out=tmp_path / "store", accelerator="cpu", **kwargs)


def _snapshot(module: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def _bn_buffers(module: torch.nn.Module) -> dict:
    return {k: v for k, v in _snapshot(module).items() if "running_" in k}


def test_lp_leaves_every_backbone_tensor_bitwise_unchanged(tmp_path):
    job = Job("digits", "lp", seed=0)
    prepared = prepare_job(job, _ctx(tmp_path))
    before = _snapshot(prepared.model.backbone)
    run_phases(job, prepared, _ctx(tmp_path))
    after = prepared.model.backbone.state_dict()
    assert before.keys() == after.keys()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_ft_changes_the_backbone_and_its_batchnorm_statistics(tmp_path):
    job = Job("digits", "ft", seed=0, hparams={"epochs": 1})
    prepared = prepare_job(job, _ctx(tmp_path))
    before = _snapshot(prepared.model.backbone)
    run_phases(job, prepared, _ctx(tmp_path))
    after = prepared.model.backbone.state_dict()
    weights = [k for k in before if "running_" not in k and "num_batches" not in k]
    assert any(not torch.equal(before[k], after[k]) for k in weights)
    assert any(not torch.equal(before[k], after[k]) for k in _bn_buffers(prepared.model.backbone))


def test_lpft_fine_tunes_from_exactly_the_lp_head_of_the_same_seed(tmp_path):
    ctx = _ctx(tmp_path)
    lp = run_job(Job("digits", "lp", seed=1), ctx)
    job = Job("digits", "lp-ft", seed=1, hparams={"epochs": 1})
    prepared = prepare_job(job, ctx)
    bn_before = _bn_buffers(prepared.model.backbone)
    phases, _, _ = run_phases(job, prepared, ctx)
    probe, finetune = phases
    assert probe["end"]["head_sha256"] == lp["phases"][0]["end"]["head_sha256"]
    assert finetune["start"]["head_sha256"] == probe["end"]["head_sha256"]
    assert finetune["end"]["head_sha256"] != finetune["start"]["head_sha256"]
    # LP-FT keeps BatchNorm in eval mode: running statistics are those of the pretrained backbone.
    bn_after = _bn_buffers(prepared.model.backbone)
    assert all(torch.equal(bn_before[k], bn_after[k]) for k in bn_before)


def test_lp_head_reproduces_the_probe_accuracy_through_the_network(tmp_path):
    """The head mapped back to the raw feature scale gives, end to end, the accuracy the probe recorded."""
    job = Job("digits", "lp", seed=0)
    ctx = _ctx(tmp_path)
    prepared = prepare_job(job, ctx)
    phases, _, _ = run_phases(job, prepared, ctx)
    model, dm = prepared.model.eval(), prepared.datamodule
    for eval_set in dm.eval_sets:
        x, y = eval_set.dataset.tensors
        with torch.no_grad():
            accuracy = (model(x).argmax(-1) == y).float().mean().item()
        assert accuracy == pytest.approx(phases[0]["epochs"][0][f"acc/{eval_set.name}"], abs=1e-6)


def test_logistic_path_maps_back_to_raw_scale_and_zero_rows_for_absent_classes():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(120, 5)) * [1, 10, 100, 0.1, 3] + [5, -2, 50, 0, 1]
    y = (x[:, 0] > 5).astype(int) + 2 * (x[:, 1] > -2)  # classes 0..3; class 4 never appears
    probe = fit_logistic_path(x, y, x, y, Cs=(0.01, 1.0, 100.0), num_classes=5)
    assert probe.weight.shape == (5, 5)
    assert np.all(probe.weight[4] == 0) and probe.bias[4] == 0
    assert (probe.logits(x)[:, :4].argmax(-1) == y).mean() > 0.9
    assert [p["C"] for p in probe.path] == [0.01, 1.0, 100.0]


def test_job_identity_is_its_meaning_not_its_machine_paths(tmp_path):
    job = Job("digits", "ft", seed=0, hparams={"lr": 1e-3})
    assert _ctx(tmp_path).job_dir(job).name == job.id
    assert RunContext(out=tmp_path / "elsewhere", data_root="/data/x").job_dir(job).name == job.id
    assert Job("digits", "ft", seed=0, hparams={"lr": 1e-3}).id == job.id
    assert Job("digits", "ft", seed=1, hparams={"lr": 1e-3}).id != job.id
    assert Job("digits", "ft", seed=0, hparams={"lr": 1e-2}).id != job.id
    # Explicit defaults mean the same job as omitted ones.
    assert Job("digits", "ft", seed=0, hparams={"lr": 1e-3, "epochs": 10}).id == job.id

    checkpoint = tmp_path / "a" / "weights.pt"
    checkpoint.parent.mkdir()
    torch.save({"w": torch.ones(3)}, checkpoint)
    moved = tmp_path / "b" / "renamed.pt"
    moved.parent.mkdir()
    shutil.copy(checkpoint, moved)
    first = Job("digits", "ft", 0, backbone="timm:resnet18", checkpoint=str(checkpoint))
    second = Job("digits", "ft", 0, backbone="timm:resnet18", checkpoint=str(moved))
    assert first.id == second.id
    torch.save({"w": torch.zeros(3)}, moved)
    assert Job("digits", "ft", 0, backbone="timm:resnet18", checkpoint=str(moved)).id != first.id


def test_unknown_hyperparameter_is_a_clear_error():
    with pytest.raises(UsageError, match="takes"):
        Job("digits", "lp", seed=0, hparams={"lr": 1.0}).meaning()


@pytest.mark.slow
def test_compiled_fine_tuning_keeps_the_state_dict_names_the_store_relies_on(tmp_path):
    ctx = RunContext(out=tmp_path / "store", accelerator="cpu", compile=True)
    job = Job("digits", "lp-ft", seed=0, hparams={"epochs": 1})
    record = run_job(job, ctx)
    assert record["status"] == "done"
    assert record["phases"][1]["start"]["head_sha256"] == record["phases"][0]["end"]["head_sha256"]
    from safetensors.torch import load_file

    (saved,) = (ctx.out / "phases").glob("1-ft-*/model.safetensors")
    assert not any("_orig_mod" in key for key in load_file(str(saved)))
