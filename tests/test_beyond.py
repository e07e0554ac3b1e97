"""The methods after the papers: WiSE-FT, L2-SP, layer-wise learning rates, surgical fine-tuning, freeze-embed,
gradual unfreezing, model soups and temperature scaling."""
import dataclasses
import random

import pytest
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch import nn
from torchmetrics.classification import MulticlassCalibrationError

from lpft_bench.models import Classifier
from lpft_bench.datamodules import EvalSet
from lpft_bench.engine import Job, RunContext, ingredient_jobs, phase_key, prepare_job, run_job, run_phases
from lpft_bench.storage import write_json
from lpft_bench.strategies import WISE_ALPHAS, get_strategy
from lpft_bench.strategies.layers import grouped_parameters, layer_groups
from lpft_bench.strategies.kinds import phase_kind
from lpft_bench.strategies.module import AdaptationModule
from lpft_bench.strategies.posthoc import calibration, fit_temperature, greedy_soup, interpolate
from lpft_bench.suites import get_suite
from lpft_bench.analysis.tables import collect

RESNET_GROUPS = ["stem", "layer1", "layer2", "layer3", "layer4", "head"]


def _resnet() -> Classifier:
    """The digits backbone's architecture, randomly initialised (no pretraining needed)."""
    backbone = timm.create_model("resnet10t", in_chans=1, channels=(16, 32, 64, 128), stem_width=16, num_classes=0)
    return Classifier(backbone, 10)


def _vit() -> Classifier:
    return Classifier(timm.create_model("vit_tiny_patch16_224", img_size=32, patch_size=8, depth=3, num_classes=0), 10)


@pytest.fixture(scope="module")
def ctx(tmp_path_factory):
    """One store for the module's digits jobs: the LP probe of a seed is computed once and reused."""
    return RunContext(out=tmp_path_factory.mktemp("beyond") / "store", accelerator="cpu")


def _state(model: nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _changed(before: dict, after: dict) -> set[str]:
    return {k for k in before if not torch.equal(before[k], after[k])}


def _in_groups(model: nn.Module, groups) -> set[str]:
    """Names of the state (parameters and buffers) of the model's layer groups `groups`."""
    members = [m for group in groups for m in layer_groups(model)[group]]
    return {k for k in model.state_dict() if any(k == m or k.startswith(m + ".") for m in members)}


def _stored_model(ctx, job: Job, index: int, source: dict | None = None) -> dict:
    """The model the phase store holds after the job's phases[:index + 1]; a head-only result over `source`
    (the model's state before its first phase)."""
    key = phase_key(job, get_strategy(job.strategy).phases(job.hparams), index)
    if source is not None and (ctx.out / "phases" / key / "head.safetensors").exists():
        return {**source, **load_file(str(ctx.out / "phases" / key / "head.safetensors"))}
    return load_file(str(ctx.out / "phases" / key / "model.safetensors"))


# Layer groups and layer-wise learning rates


def test_layer_groups_order_resnet_stages_and_vit_blocks_by_depth():
    resnet = _resnet()
    assert layer_groups(resnet) == {"stem": ("backbone.conv1", "backbone.bn1"), "layer1": ("backbone.layer1",),
                                    "layer2": ("backbone.layer2",), "layer3": ("backbone.layer3",),
                                    "layer4": ("backbone.layer4",), "head": ("head",)}
    vit = _vit()
    groups = layer_groups(vit)
    assert list(groups) == ["stem", "blocks.0", "blocks.1", "blocks.2", "head"]
    assert set(groups["stem"]) == {"backbone.cls_token", "backbone.pos_embed", "backbone.patch_embed"}
    assert groups["blocks.2"] == ("backbone.blocks.2", "backbone.norm")
    for model in (resnet, vit):
        grouped = grouped_parameters(model)
        assert sorted(n for params in grouped.values() for n, _ in params) == sorted(n for n, _ in model.named_parameters())


def _module(model: nn.Module, phase, pretrained=None) -> AdaptationModule:
    return AdaptationModule(model, phase, phase_kind(phase.trains).trainability, [], 10, pretrained=pretrained)


def _set_trainable(model: nn.Module, phase) -> None:
    phase_kind(phase.trains).trainability.apply_requires_grad(model, phase)


def _learning_rates(model: nn.Module, strategy: str, hparams: dict) -> dict[str, float]:
    module = _module(model, get_strategy(strategy).phases(hparams)[0])
    configured = module.configure_optimizers()
    optimiser, schedule = configured["optimizer"], configured["lr_scheduler"]["scheduler"]
    assert sum(len(g["params"]) for g in optimiser.param_groups) == len(list(model.parameters()))
    assert schedule.base_lrs == [g["lr"] for g in optimiser.param_groups]  # cosine decay scales each group's rate
    return {g["name"]: g["lr"] for g in optimiser.param_groups}


def test_layer_wise_decay_gives_each_depth_its_learning_rate():
    lrs = _learning_rates(_resnet(), "llrd", {"lr": 0.1, "lr_decay": 0.5})
    assert lrs == pytest.approx({"head": 0.1, "layer4": 0.05, "layer3": 0.025, "layer2": 0.0125, "layer1": 0.00625,
                                 "stem": 0.003125})
    vit = _learning_rates(_vit(), "llrd", {"lr": 1.0, "lr_decay": 0.8})
    # timm's grouping: the final norm decays with the last block.
    assert vit == pytest.approx({"head": 1.0, "blocks.2": 0.8, "blocks.1": 0.64, "blocks.0": 0.512, "stem": 0.4096})
    ratio = _learning_rates(_resnet(), "discriminative-lr", {"lr": 0.1, "backbone_lr_ratio": 0.1})
    assert ratio == pytest.approx({"head": 0.1, **{group: 0.01 for group in RESNET_GROUPS[:-1]}})


# L2-SP


@pytest.mark.filterwarnings("ignore:You are trying to `self.log")
def test_l2sp_gradient_is_the_task_gradient_plus_alpha_times_the_distance_from_pretrained():
    torch.manual_seed(0)
    model = _resnet()
    pretrained = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
    with torch.no_grad():
        for p in model.backbone.parameters():
            p.add_(0.01 * torch.randn_like(p))
    alpha, beta = 0.5, 0.25
    phase = get_strategy("l2-sp").phases({"l2sp_alpha": alpha, "l2sp_beta": beta})[0]
    module = _module(model, phase, pretrained)
    model.eval()  # BatchNorm on running statistics: both passes compute the same function
    x, y = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    names, params = zip(*model.named_parameters())
    total = dict(zip(names, torch.autograd.grad(module.training_step((x, y), 0), params)))
    task = dict(zip(names, torch.autograd.grad(F.cross_entropy(model(x), y), params)))
    for name, p in model.backbone.named_parameters():
        torch.testing.assert_close(total[f"backbone.{name}"] - task[f"backbone.{name}"], alpha * (p - pretrained[name]))
    for name, p in model.head.named_parameters():
        torch.testing.assert_close(total[f"head.{name}"] - task[f"head.{name}"], beta * p)
    assert get_strategy("l2-sp").hparams()["l2sp_alpha"] / 2 == 0.01  # the authors' 0.01·Σ‖w − w0‖²


# Surgical fine-tuning, freeze-embed, gradual unfreezing


def test_surgical_first_block_is_the_stem_with_layer1_and_nothing_else_trains():
    for block, groups in (("layer1", {"stem", "layer1"}), ("layer3", {"layer3"}), ("head", {"head"})):
        model, phase = _resnet(), get_strategy("surgical-ft").phases({"block": block})[1]
        _set_trainable(model, phase)
        trained = {name for name, p in model.named_parameters() if p.requires_grad}
        assert trained == _in_groups(model, groups) & {name for name, _ in model.named_parameters()}
        assert phase.batchnorm == "eval" and phase.head_init == "keep"
    with pytest.raises(ValueError, match="layer groups"):
        _set_trainable(_resnet(), get_strategy("surgical-ft").phases({"block": "blocks.3"})[1])


def test_surgical_ft_changes_only_the_named_block(ctx):
    job = Job("digits", "surgical-ft", seed=0, hparams={"block": "layer2", "epochs": 1, "lr": 1e-3})
    prepared = prepare_job(job, ctx)
    source = {k: v.clone() for k, v in prepared.model.state_dict().items()}
    run_phases(job, prepared, ctx)
    after_lp, after = _stored_model(ctx, job, 0, source), prepared.model.state_dict()
    changed = _changed(after_lp, after)
    assert changed and changed <= {k for k in _in_groups(prepared.model, ["layer2"]) if "running_" not in k
                                   and "num_batches" not in k}  # BatchNorm frozen: statistics untouched


def test_sgd_momentum_leaves_a_parameter_with_zero_or_dropped_gradients_unchanged():
    """Why gradual unfreezing can hand every parameter to the optimiser at the start."""
    def train(weight_decay: float, drop) -> bool:
        torch.manual_seed(0)
        frozen, trained = nn.Parameter(torch.randn(4)), nn.Parameter(torch.randn(4))
        before = frozen.detach().clone()
        optimiser = torch.optim.SGD([frozen, trained], lr=0.1, momentum=0.9, weight_decay=weight_decay)
        for _ in range(3):
            optimiser.zero_grad()
            ((frozen * trained).sum() ** 2).backward()
            drop(frozen)
            optimiser.step()
        return torch.equal(frozen.detach(), before)

    def zero(p):
        p.grad.zero_()

    def none(p):
        p.grad = None

    assert train(0.0, zero)  # zero gradients, weight decay 0: the momentum buffer stays zero
    assert not train(0.1, zero)  # weight decay alone moves it ...
    assert train(0.1, none)  # ... unless the gradient is dropped: the optimiser then skips the parameter


def test_gradual_unfreezing_keeps_groups_not_yet_unfrozen_bitwise_unchanged(ctx):
    job = Job("digits", "gradual-unfreeze", seed=0, hparams={"epochs": 2, "lr": 1e-2, "unfreeze_every": 1})
    prepared = prepare_job(job, ctx)
    model = prepared.model
    phase = prepared.phases[0]
    assert len(_module(model, phase).parameter_groups()) == len(list(model.parameters()))
    before = _state(model)
    run_phases(job, prepared, ctx)
    changed = _changed(before, model.state_dict())
    # Epoch 0 trains the head, epoch 1 the head and layer4; below that, parameters and BatchNorm statistics are untouched.
    assert not changed & _in_groups(model, ["stem", "layer1", "layer2", "layer3"])
    assert changed & _in_groups(model, ["layer4"]) and changed & _in_groups(model, ["head"])


def test_bitfit_changes_only_the_backbones_biases_and_the_head_and_no_batchnorm_statistic(ctx):
    job = Job("digits", "bitfit", seed=0, hparams={"epochs": 1, "lr": 1e-1})
    prepared = prepare_job(job, ctx)
    model = prepared.model
    before = _state(model)
    run_phases(job, prepared, ctx)
    changed = _changed(before, model.state_dict())
    biases = {k for k in before if k.startswith("backbone.") and k.endswith(".bias")}
    head = {k for k in before if k.startswith("head.")}
    assert changed <= biases | head
    assert changed & biases and head <= changed  # the biases did train, and the fresh head with them
    batchnorm_statistics = {k for k in before if k.endswith(("running_mean", "running_var", "num_batches_tracked"))}
    assert batchnorm_statistics and not changed & batchnorm_statistics


def test_freeze_embed_keeps_the_stem_of_a_cnn_unchanged(ctx):
    job = Job("digits", "freeze-embed", seed=0, hparams={"epochs": 1, "lr": 1e-2})
    prepared = prepare_job(job, ctx)
    before = _state(prepared.model)
    run_phases(job, prepared, ctx)
    changed = _changed(before, prepared.model.state_dict())
    assert not changed & _in_groups(prepared.model, ["stem"])
    assert changed & _in_groups(prepared.model, ["layer1"])


# WiSE-FT


def test_interpolation_end_points_are_the_two_models_exactly():
    torch.manual_seed(0)
    start_model, end_model = _resnet(), _resnet()
    end_model.train()(torch.randn(16, 1, 32, 32))  # the fine-tuned model's BatchNorm statistics differ too
    start, end = _state(start_model), _state(end_model)
    x = torch.randn(8, 1, 32, 32)
    model = _resnet().eval()
    for alpha, reference in ((0.0, start_model), (1.0, end_model)):
        state = interpolate(start, end, alpha)
        assert not _changed(_state(reference), state)
        model.load_state_dict(state)
        assert torch.equal(model(x), reference.eval()(x))
    halfway = interpolate(start, end, 0.5)
    torch.testing.assert_close(halfway["head.weight"], (start["head.weight"] + end["head.weight"]) / 2)


def _accuracies(row: dict) -> dict:
    return {k: v for k, v in row.items() if k.startswith("acc/")}


def test_wise_ft_reuses_lp_ft_and_reports_every_alpha_choosing_on_id_validation(ctx):
    hparams = {"epochs": 2, "lr": 1e-3}
    # Every set after every epoch (a recording option, outside the job's identity: wise-ft still reuses the phases).
    lp_ft = run_job(Job("digits", "lp-ft", seed=0, hparams=hparams), dataclasses.replace(ctx, eval_every_epoch=True))
    wise = run_job(Job("digits", "wise-ft", seed=0, hparams={**hparams, "reestimate_bn": False}), ctx)
    lp, ft, interpolation = wise["phases"]
    assert "reused" in lp and "reused" in ft  # the lp-ft job's probe and fine-tuning, not rerun
    rows = interpolation["epochs"]
    assert [row["alpha"] for row in rows] == list(WISE_ALPHAS)
    # Statistics interpolated with the weights: α = 0 is the LP model, α = 1 the fine-tuned one.
    assert _accuracies(rows[0]) == pytest.approx(_accuracies(lp["epochs"][0]), abs=1e-6)
    assert _accuracies(rows[-1]) == pytest.approx(_accuracies(lp_ft["phases"][1]["epochs"][-1]), abs=1e-6)
    best = max(row["acc/id_val"] for row in rows)
    chosen = next(row for row in rows if row["acc/id_val"] == best)
    assert wise["selection"] == {"set": "id_val", "phase": "wise", "epoch": chosen["epoch"], "alpha": chosen["alpha"]}
    assert wise["final"] == {name.removeprefix("acc/"): value for name, value in _accuracies(chosen).items()}
    _assert_calibration(wise)

    reestimating = {**hparams, "reestimate_bn": True}  # the option; interpolated statistics are the default
    reestimated = run_job(Job("digits", "wise-ft", seed=0, hparams=reestimating), ctx)
    assert len(reestimated["phases"][2]["epochs"]) == len(WISE_ALPHAS)
    key = phase_key(Job("digits", "wise-ft", seed=0, hparams=reestimating), get_strategy("wise-ft").phases(reestimating), 2)
    statistics = load_file(str(ctx.out / "phases" / key / "model.safetensors"))
    after_ft = _stored_model(ctx, Job("digits", "lp-ft", seed=0, hparams=hparams), 1)
    assert all(not torch.equal(statistics[k], after_ft[k]) for k in statistics if k.endswith("running_mean"))


# Model soups


def test_greedy_soup_never_scores_below_its_best_ingredient():
    rng = random.Random(0)
    for _ in range(300):
        scores = [rng.choice([0.5, 0.6, 0.7, rng.random()]) for _ in range(rng.randint(1, 6))]
        soups: dict[tuple, float] = {}
        members, score = greedy_soup(scores, lambda m: soups.setdefault(tuple(m), rng.random()))
        assert score >= max(scores)
        assert scores[members[0]] == max(scores)
        assert score == (scores[members[0]] if len(members) == 1 else soups[tuple(members)])


def test_soup_ingredients_are_the_sweep_jobs_of_the_suite():
    jobs = get_suite("beyond").expand(seeds=[1])
    ids = [job.id for job in jobs]
    for soup in (job for job in jobs if job.strategy.endswith("-soup")):
        ingredients = ingredient_jobs(soup, get_strategy(soup.strategy).phases(soup.hparams)[0])
        assert [j.strategy for j in ingredients] == ["ft"] * 3
        # Same identities as the suite's own FT jobs, which run before the soup: their stored models are reused.
        assert all(j.id in ids and ids.index(j.id) < ids.index(soup.id) for j in ingredients)


def test_soups_average_the_sweep_from_the_store_and_greedy_never_lowers_id_validation(ctx):
    hparams = {"epochs": 2, "lrs": (3e-3, 1e-2)}
    greedy = run_job(Job("digits", "greedy-soup", seed=1, hparams=hparams), ctx)
    soup = greedy["phases"][0]
    scores = [ingredient["acc/id_val"] for ingredient in soup["ingredients"]]
    assert greedy["final"]["id_val"] >= max(scores)
    assert soup["members"][0] == soup["ingredients"][scores.index(max(scores))]["job_id"]
    uniform = run_job(Job("digits", "uniform-soup", seed=1, hparams=hparams), ctx)
    assert uniform["phases"][0]["members"] == [ingredient["job_id"] for ingredient in soup["ingredients"]]
    assert uniform["phases"][0]["ingredients"] == soup["ingredients"]  # the same models, from the store
    # The sweep's own jobs find the models the soup trained, and end where its ingredients did.
    ft = run_job(Job("digits", "ft", seed=1, hparams={"epochs": 2, "lr": 1e-2}), ctx)
    assert "reused" in ft["phases"][0]
    _assert_calibration(uniform)


# Temperature scaling


def _eval_set(name: str, split: str) -> EvalSet:
    return EvalSet(name, torch.utils.data.TensorDataset(torch.zeros(1)), split)


def _assert_calibration(record: dict) -> None:
    sets = record["calibration"]["sets"]
    assert all(row["acc"] == row["acc_calibrated"] for row in sets.values())
    assert sets["id_val"]["nll_calibrated"] <= sets["id_val"]["nll"]
    assert record["calibration"]["temperature"] > 0


def test_expected_calibration_error_by_hand():
    # Confidence 0.9 right and 0.8 wrong, in different bins: ECE = (|1 - 0.9| + |0 - 0.8|) / 2.
    logits = torch.tensor([[0.9, 0.1], [0.8, 0.2]]).log()
    report = calibration({"id_val": (logits, torch.tensor([0, 1]))}, [_eval_set("id_val", "id")], "id_val", 2)
    assert report["sets"]["id_val"]["ece"] == pytest.approx(0.45)
    assert report["ece_bins"] == 15


def test_temperature_scaling_keeps_accuracy_and_lowers_validation_nll():
    torch.manual_seed(0)
    outputs = {}
    for name, noise in (("id_val", 1.0), ("id_test", 1.0), ("shifted", 3.0)):
        labels = torch.randint(0, 5, (500,))
        logits = 8.0 * (F.one_hot(labels, 5) + noise * torch.randn(500, 5))  # over-confident
        outputs[name] = (logits, labels)
    eval_sets = [_eval_set("id_val", "id"), _eval_set("id_test", "id"), _eval_set("shifted", "ood")]
    report = calibration(outputs, eval_sets, "id_val", 5)
    assert report["temperature"] > 1
    for name, row in report["sets"].items():
        assert row["acc"] == row["acc_calibrated"]
        logits, labels = outputs[name]
        ece = MulticlassCalibrationError(num_classes=5, n_bins=15, norm="l1")(logits.softmax(-1), labels)
        assert row["ece"] == pytest.approx(float(ece), abs=1e-6)
    assert report["sets"]["id_val"]["nll_calibrated"] < report["sets"]["id_val"]["nll"]
    assert report["sets"]["id_val"]["ece_calibrated"] < report["sets"]["id_val"]["ece"]


def test_fitted_temperature_never_raises_the_nll_it_is_fitted_on():
    torch.manual_seed(1)
    for scale in (0.01, 1.0, 100.0):
        logits = scale * torch.randn(200, 4)
        labels = torch.distributions.Categorical(logits=logits).sample()  # calibrated at T = 1
        temperature = fit_temperature(logits, labels)
        assert F.cross_entropy(logits / temperature, labels) <= F.cross_entropy(logits, labels)


def test_collect_writes_a_calibration_table_without_touching_the_accuracy_tables(tmp_path):
    def record(job_id, strategy, seed, ece):
        sets = {"id_val": "id", "id_test": "id", "rotated": "ood"}
        return {"schema": "lpft-bench/record/v1", "job_id": job_id, "status": "done",
                "job": {"benchmark": "digits", "strategy": strategy, "seed": seed, "backbone": "b", "hparams": {},
                        "benchmark_options": {}, "checkpoint": None},
                "eval_sets": {k: {"split": v, "size": 10} for k, v in sets.items()},
                "selection": {"set": "id_val", "phase": "ft", "epoch": 0}, "final": dict.fromkeys(sets, 0.9),
                "calibration": {"temperature": 1.5, "sets": {k: {"split": v, "ece": ece, "ece_calibrated": ece / 2}
                                                             for k, v in sets.items()}}}

    for r in (record("a", "ft", 0, 0.1), record("b", "ft", 1, 0.3), record("c", "wise-ft", 0, 0.2)):
        write_json(tmp_path / "jobs" / r["job_id"] / "record.json", r)
    printed = collect(tmp_path)
    table = (tmp_path / "calibration.csv").read_text().splitlines()
    assert table[0] == "strategy,split,column,ece,ece_calibrated,temperature,seeds"
    assert "ft,id,digits,20.0,10.0,1.5,2" in table and "wise-ft,ood,digits:rotated,20.0,10.0,1.5,1" in table
    assert "20.0 → 10.0" in printed
    assert printed.index("OOD accuracy") < printed.index("ECE (%)")
