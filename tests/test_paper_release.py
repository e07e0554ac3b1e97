"""Paper mode against the authors' first release (AnanyaKumar/transfer_learning at 36fb2ef, 2022-04-03), issue 21:
DomainNet's batch size, its OOD figure, the ImageNet probe, the configs' normalisation constants."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD

from lpft_bench.datamodules import build_datamodule
from lpft_bench.engine import Job, RunContext, phase_key, prepare_job, run_phases
from lpft_bench.strategies import get_strategy
from lpft_bench.suites import SUITES

IMAGENET_NORMALISED = {"input_size": (3, 224, 224), "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD}
# The Normalize steps of configs/adaptation/datasets_<name>.yaml at 36fb2ef: (training std, evaluation std).
OFFICIAL_STD = {
    "living17": ([0.228, 0.224, 0.225], [0.228, 0.224, 0.225]),  # L19-22, L32-35
    "entity30": ([0.228, 0.224, 0.225], [0.228, 0.224, 0.225]),  # L19-22, L32-35
    "cifar10": ([0.228, 0.224, 0.225], [0.228, 0.224, 0.225]),  # datasets_cifar_stl.yaml L16-19, L26-29
    "fmow": ([0.2289, 0.224, 0.225], [0.229, 0.224, 0.225]),  # L16-19, L24-27
}


def test_domainnet_trains_with_the_batch_of_64_that_domainnet_yaml_inherits():
    # domainnet.yaml inherits resnet50_transfer.yaml (L2-4), whose batch_size is 64 (L5); it sets none itself.
    jobs = SUITES["paper"].expand(benchmarks=["domainnet"], seeds=[0])
    assert {job.hparams["batch_size"] for job in jobs} == {64}


@pytest.mark.parametrize("benchmark", sorted(OFFICIAL_STD))
def test_paper_mode_normalises_with_the_configs_constants_clean_mode_with_the_backbones(benchmark):
    paper = build_datamodule(benchmark, data_config=IMAGENET_NORMALISED).transform_pipelines()
    assert tuple(pipeline[-1]["std"] for pipeline in paper) == OFFICIAL_STD[benchmark]
    assert all(pipeline[-1]["mean"] == [0.485, 0.456, 0.406] for pipeline in paper)
    clean = build_datamodule(benchmark, mode="clean", data_config=IMAGENET_NORMALISED).transform_pipelines()
    assert all(pipeline[-1]["std"] == [0.229, 0.224, 0.225] for pipeline in clean)
    # A backbone normalised otherwise (CLIP) keeps its own: the configs' constants spell ImageNet's.
    clip = {**IMAGENET_NORMALISED, "mean": (0.481, 0.458, 0.408), "std": (0.269, 0.261, 0.276)}
    assert build_datamodule(benchmark, data_config=clip).transform_pipelines()[0][-1]["std"] == [0.269, 0.261, 0.276]


def test_the_paper_normalisation_is_part_of_the_benchmarks_identity_in_paper_mode_only():
    from lpft_bench.datamodules import benchmark_meaning

    assert benchmark_meaning("fmow", {})["paper_std"] == [list(std) for std in OFFICIAL_STD["fmow"]]
    assert "paper_std" not in benchmark_meaning("fmow", {"mode": "clean"})
    assert "paper_std" not in benchmark_meaning("domainnet", {})  # CLIP normalises inside the authors' model


def test_imagenet_probe_is_evaluated_every_epoch_and_lp_ft_starts_from_the_one_seed_0_lr_0_1_probe():
    jobs = SUITES["paper"].expand(benchmarks=["imagenet"], strategies=["lp", "lp-ft"])
    phases = [get_strategy(job.strategy).phases(job.hparams) for job in jobs]
    assert {(p[0].epochs, p[0].validate_every) for p in phases} == {(5, 1)}
    keys = [[phase_key(job, p, i) for i in range(len(p))] for job, p in zip(jobs, phases)]
    (shared,) = [k[0] for job, k in zip(jobs, keys) if job.strategy == "lp" and job.seed == 0 and job.hparams["hp_lr"] == 0.1]
    lpft = [k for job, k in zip(jobs, keys) if job.strategy == "lp-ft"]
    assert {job.seed for job in jobs if job.strategy == "lp-ft"} == {0, 1, 2}
    assert {k[0] for k in lpft} == {shared}
    # ... while their fine-tuning phases stay per seed and learning rate.
    assert len({k[1] for k in lpft}) == len(lpft) == 9
    # The LP replications are per seed, as the authors' torch_linprobe (num_replications=3).
    assert len({k[0] for job, k in zip(jobs, keys) if job.strategy == "lp"}) == 9


def test_probe_seed_pins_only_an_sgd_probe():
    with pytest.raises(ValueError, match="probe_seed"):
        get_strategy("lp-ft").phases({"probe_seed": 0})
    assert "probe_seed" not in get_strategy("lp-ft").hparams()  # absent unless given: other ids unchanged


def _first_epoch(epochs, selection_set):
    return epochs[0] if epochs else None


def _head_digest(model, state: dict) -> str:
    from lpft_bench.strategies.kinds import head_state

    model.load_state_dict({**model.state_dict(), **state})  # a probe's result is its head alone
    return head_state(model.head)["head_sha256"]


@pytest.mark.slow  # three short digits jobs
def test_lp_ft_fine_tunes_from_the_pinned_probes_selected_epoch_not_its_last(tmp_path, monkeypatch):
    from lpft_bench.strategies import callbacks
    from lpft_bench.strategies.kinds import gradient

    # Selection picks the first epoch: the probe's best epoch is then not its last, whatever the data (the phase
    # keeps that epoch's weights, SelectedWeights, and hands them on).
    monkeypatch.setattr(callbacks, "select_epoch", _first_epoch)
    monkeypatch.setattr(gradient, "select_epoch", _first_epoch)
    ctx = RunContext(out=tmp_path / "store", accelerator="cpu")
    common = {"probe": "sgd", "hp_epochs": 2, "hp_lr": 0.1, "epochs": 1}
    lpft = Job("digits", "lp-ft", seed=1, hparams={**common, "lr": 1e-4, "probe_seed": 0},
               benchmark_options={"subset": 60})
    prepared = prepare_job(lpft, ctx)
    probe, ft = run_phases(lpft, prepared, ctx)[0]
    key = phase_key(lpft, prepared.phases, 0)
    assert probe["reused"] == key and len(probe["epochs"]) == 2  # run as the seed-0 job runs it, every epoch evaluated
    best = load_file(str(ctx.out / "phases" / key / "selected.safetensors"))
    assert ft["start"]["head_sha256"] == _head_digest(prepare_job(lpft, ctx).model, best) != probe["end"]["head_sha256"]
    # The seed-0 LP job with the same probe reuses that very phase instead of training it again.
    lp = Job("digits", "lp", seed=0, hparams={k: common[k] for k in ("probe", "hp_epochs", "hp_lr")},
             benchmark_options={"subset": 60})
    lp_prepared = prepare_job(lp, ctx)
    (lp_probe,), _, _ = run_phases(lp, lp_prepared, ctx)
    assert lp_probe["reused"] == key
    # Another seed's LP-FT starts from the same head.
    other = Job("digits", "lp-ft", seed=2, hparams={**common, "lr": 1e-4, "probe_seed": 0},
                benchmark_options={"subset": 60})
    other_prepared = prepare_job(other, ctx)
    _, other_ft = run_phases(other, other_prepared, ctx)[0]
    assert other_ft["start"]["head_sha256"] == ft["start"]["head_sha256"]
    with torch.no_grad():
        assert not torch.equal(prepared.model.head.weight, other_prepared.model.head.weight)  # FT itself per seed
