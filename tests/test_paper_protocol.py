"""Paper mode against the authors' released code (AnanyaKumar/transfer_learning), item by item."""
from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression

from lpft_bench.strategies.linear_probe import PROBE_SETTINGS, fit_logistic_path
from lpft_bench.strategies.kinds import phase_kind


def _features(seed=0, n=90, dim=6, classes=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, n)
    centres = rng.normal(size=(classes, dim)) * 2
    # Columns on very different scales: scalar and per-feature standardisation then disagree.
    x = (centres[y] + rng.normal(size=(n, dim))) * np.array([1, 10, 0.1, 5, 1, 50])[:dim] + 3
    return x, y


def _official_probe(train_x, train_y, val_x, val_y, Cs):
    """log_reg_sk.py's normalize_features, test_log_reg_warm_starting and inv_normalize_weights, verbatim in effect."""
    mean, std = np.mean(train_x), np.std(train_x)
    clf = LogisticRegression(random_state=0, warm_start=True, max_iter=200)
    best_acc, best = -1.0, None
    for C in Cs:
        clf.C = C
        clf.fit((train_x - mean) / std, train_y)
        acc = np.mean(clf.predict((val_x - mean) / std) == val_y)
        if acc > best_acc:
            best_acc, best = acc, (C, clf.coef_.copy(), clf.intercept_.copy())
    C, coef, intercept = best
    return C, coef / std, intercept - coef @ (mean / std * np.ones(coef.shape[1]))


def test_paper_probe_is_the_official_scalar_standardisation_and_max_iter():
    train_x, train_y = _features(0)
    val_x, val_y = _features(1)
    Cs = tuple(float(c) for c in np.logspace(-7, 2, 20))
    C, weight, bias = _official_probe(train_x, train_y, val_x, val_y, Cs)
    probe = fit_logistic_path(train_x, train_y, val_x, val_y, Cs, 3, settings=PROBE_SETTINGS["paper"])
    assert probe.C == C
    np.testing.assert_allclose(probe.weight, weight, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(probe.bias, bias, rtol=1e-4, atol=1e-5)
    per_feature = fit_logistic_path(train_x, train_y, val_x, val_y, Cs, 3,
                                    settings=PROBE_SETTINGS["clean"])
    assert not np.allclose(per_feature.weight, probe.weight, rtol=1e-2)


def test_clean_probe_breaks_accuracy_ties_by_validation_log_loss_paper_keeps_the_smaller_C():
    # Separable data: validation accuracy saturates at 100% over many Cs.
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    x = np.eye(3)[y] * 4 + rng.normal(scale=0.3, size=(90, 3))
    Cs = (1e-3, 1e-2, 1e-1, 1.0, 10.0)
    paper = fit_logistic_path(x, y, x, y, Cs, 3, settings=PROBE_SETTINGS["paper"])
    clean = fit_logistic_path(x, y, x, y, Cs, 3, settings=PROBE_SETTINGS["clean"])
    tied = [p["C"] for p in clean.path if p["val_acc"] == max(q["val_acc"] for q in clean.path)]
    assert len(tied) > 1
    assert paper.C == tied[0]
    losses = {p["C"]: p["val_log_loss"] for p in clean.path}
    assert clean.C == min(tied, key=losses.get) and clean.C != tied[0]


def test_unknown_standardisation_is_an_error():
    x, y = _features(0)
    settings = PROBE_SETTINGS["paper"].__class__("columnwise", 200, "smaller-C", "eval-transform")
    with pytest.raises(ValueError, match="standardise"):
        fit_logistic_path(x, y, x, y, (1.0,), 3, settings=settings)


# The authors' configs/adaptation/datasets_<benchmark>.yaml, transforms before ToTensor/Normalize.
OFFICIAL_PIPELINES = {
    "living17": ([{"op": "random_resized_crop", "size": 224, "scale": [0.08, 1.0], "interpolation": "bilinear"},
                  {"op": "horizontal_flip", "p": 0.5}],
                 [{"op": "resize", "size": 256, "interpolation": "bilinear"}, {"op": "center_crop", "size": 224}]),
    "domainnet": ([{"op": "resize", "size": [256, 256], "interpolation": "bicubic"}, {"op": "random_crop", "size": 224},
                   {"op": "horizontal_flip", "p": 0.5}],
                  [{"op": "resize", "size": [224, 224], "interpolation": "bicubic"}]),
    "imagenet": ([{"op": "resize", "size": 224, "interpolation": "bicubic"}, {"op": "center_crop", "size": 224}],) * 2,
    "fmow": ([{"op": "resize", "size": [224, 224], "interpolation": "bilinear"}],) * 2,
    "cifar10": ([{"op": "resize", "size": [224, 224], "interpolation": "bilinear"}],) * 2,
}
OFFICIAL_PIPELINES["entity30"] = OFFICIAL_PIPELINES["living17"]
IMAGENET_NORMALISATION = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}


@pytest.mark.parametrize("benchmark", sorted(OFFICIAL_PIPELINES))
def test_each_benchmark_transforms_as_the_official_config(benchmark):
    from lpft_bench.datamodules import build_datamodule

    from test_paper_release import OFFICIAL_STD

    dm = build_datamodule(benchmark, data_config={"input_size": (3, 224, 224), **IMAGENET_NORMALISATION})
    training, evaluation = dm.transform_pipelines()
    stds = OFFICIAL_STD.get(benchmark, ([0.229, 0.224, 0.225],) * 2)  # DomainNet, ImageNet: CLIP's, in the model
    tails = [[{"op": "to_tensor"}, {"op": "normalize", "mean": [0.485, 0.456, 0.406], "std": std}] for std in stds]
    assert (training, evaluation) == tuple(steps + tail for steps, tail in zip(OFFICIAL_PIPELINES[benchmark], tails))


def test_pipelines_scale_with_the_input_size_and_build_the_transforms_they_list():
    from PIL import Image

    from lpft_bench.datamodules import build_datamodule

    dm = build_datamodule("domainnet", data_config={"input_size": (3, 32, 32), **IMAGENET_NORMALISATION})
    training, evaluation = dm.transform_pipelines()
    assert training[0] == {"op": "resize", "size": [37, 37], "interpolation": "bicubic"}  # 256/224 of 32
    train_transform, eval_transform = dm.image_transforms()
    image = Image.new("RGB", (50, 70))
    assert train_transform(image).shape == eval_transform(image).shape == (3, 32, 32)
    assert [type(t).__name__ for t in train_transform.transforms] == [
        "Resize", "RandomCrop", "RandomHorizontalFlip", "ToTensor", "Normalize"]


@pytest.mark.slow  # builds a ResNet-50 and a ViT-B/16
def test_clip_backbones_keep_their_image_projection_1024_and_512_wide():
    import torch

    from lpft_bench.models import BACKBONES, Classifier, build_backbone

    for name, width in (("clip-resnet50", 1024), ("clip-vit-b16", 512)):
        backbone, _ = build_backbone(BACKBONES[name], pretrained=False)
        with torch.no_grad():
            assert backbone.eval()(torch.zeros(1, 3, 224, 224)).shape == (1, width)
        assert Classifier(backbone, 40).head.in_features == width
        projection = "head.proj.weight" if name == "clip-resnet50" else "head.weight"
        assert tuple(backbone.state_dict()[projection].shape)[0] == width


def _small_resnet_checkpoint(tmp_path, edit):
    import timm
    from safetensors.torch import save_file

    from lpft_bench.models import BackboneSpec

    kwargs = {"channels": (8, 8, 8, 8), "stem_width": 8}
    state = timm.create_model("resnet10t", num_classes=5, **kwargs).state_dict()  # with its classifier `fc`
    edit(state)
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return BackboneSpec("resnet10t", kwargs, weights=str(path))


def test_loading_a_checkpoint_names_every_unused_or_missing_tensor_but_drops_the_classifier(tmp_path):
    import torch

    from lpft_bench.models import build_backbone

    build_backbone(_small_resnet_checkpoint(tmp_path, lambda state: None))  # `fc.*` is the classifier: fine
    extra = _small_resnet_checkpoint(tmp_path, lambda state: state.update({"attnpool.proj.weight": torch.ones(2, 2)}))
    with pytest.raises(ValueError, match=r"does not use: attnpool\.proj\.weight"):
        build_backbone(extra)
    missing = _small_resnet_checkpoint(tmp_path, lambda state: state.pop("layer4.0.conv1.weight"))
    with pytest.raises(ValueError, match=r"missing from the checkpoint: layer4\.0\.conv1\.weight"):
        build_backbone(missing)


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory):
    from lpft_bench.datamodules import write_fake

    root = tmp_path_factory.mktemp("fakes")
    for benchmark in ("living17", "cifar10"):
        write_fake(benchmark, root)
    return root


def _probe_training_features(benchmark, root, seed, mode="paper"):
    """The probe's training features and the feature cache entries (set, view, random) they were read from."""
    from types import SimpleNamespace

    import timm
    import torch

    from lpft_bench.datamodules import build_datamodule
    from lpft_bench.strategies.kinds.probe import training_features
    from lpft_bench.strategies.linear_probe import extract_features

    dm = build_datamodule(benchmark, data_config={"input_size": (3, 32, 32)}, data_root=str(root), seed=seed,
                          mode=mode, subset=12)
    dm.setup("fit")
    torch.manual_seed(0)  # the same backbone every call
    backbone = timm.create_model("resnet10t", num_classes=0, channels=(8, 8, 8, 8), stem_width=8)
    requested = []

    def features(name, dataset, view="eval", random_view=False):
        requested.append((name, view, random_view))
        return extract_features(backbone, dm.eval_loader(dataset))

    context = SimpleNamespace(datamodule=dm, features=features)
    return training_features(context, PROBE_SETTINGS[mode].features_view)[0], requested


def test_paper_lp_trains_on_one_seeded_augmented_view_clean_on_the_eval_view(fake_root):
    (first, names), (again, _) = (_probe_training_features("living17", fake_root, seed=0) for _ in range(2))
    other_seed, _ = _probe_training_features("living17", fake_root, seed=1)
    np.testing.assert_array_equal(first, again)
    assert not np.allclose(first, other_seed)  # Living-17 augments: LP differs across seeds, as in the paper
    assert names == [("train", "train-transform", True)]  # cached apart from the eval view, keyed on the seed
    cifar = [_probe_training_features("cifar10", fake_root, seed=s)[0] for s in (0, 1)]
    np.testing.assert_array_equal(*cifar)  # CIFAR does not augment: the paper's zero LP interval
    assert _probe_training_features("living17", fake_root, seed=0, mode="clean")[1] == [("train", "eval", False)]


def test_reinit_defaults_to_resnet50_layer4_2_cumulative_from_the_top_and_needs_head_probing():
    from lpft_bench.strategies import REINIT_CONFIGS, get_strategy

    strategy = get_strategy("reinit-ft")
    assert strategy.hparams()["reinit_blocks"] == ("layer4.2",)
    assert REINIT_CONFIGS == (("layer4.2",), ("layer4.1", "layer4.2"), ("layer4.0", "layer4.1", "layer4.2"))
    hp, ft = strategy.phases({"reinit_blocks": REINIT_CONFIGS[1]})
    assert hp.reinit == hp.also_train == ("layer4.1", "layer4.2") and ft.reinit == ()
    with pytest.raises(ValueError, match="hp_epochs=0"):
        strategy.phases({"hp_epochs": 0})


def test_reinit_uses_timms_initialiser_zeroing_the_last_batchnorm_gamma_of_the_block_only():
    import timm
    import torch

    from lpft_bench.strategies.kinds.gradient import reinitialise_from

    backbone, fresh = (timm.create_model("resnet50", num_classes=0) for _ in range(2))
    with torch.no_grad():
        for p in backbone.parameters():
            p.fill_(0.5)
    reinitialise_from(backbone, fresh, ("layer4.2",))
    state, new = backbone.state_dict(), fresh.state_dict()
    assert torch.count_nonzero(state["layer4.2.bn3.weight"]) == 0  # timm's zero_init_last; PyTorch's would be ones
    assert all(torch.equal(v, new[k]) for k, v in state.items() if k.startswith("layer4.2."))
    assert all(torch.all(v == 0.5) for k, v in backbone.named_parameters() if not k.startswith("layer4.2."))
    with pytest.raises(ValueError, match="layer4.3"):
        reinitialise_from(backbone, fresh, ("layer4.3",))


def _small_classifier(seed):
    import timm
    import torch

    from lpft_bench.models import Classifier

    torch.manual_seed(seed)
    return Classifier(timm.create_model("resnet10t", num_classes=0, channels=(8, 8, 8, 8), stem_width=8), 3)


def test_l2sp_default_strength_is_the_official_one_hundredth_of_the_squared_distance():
    import torch

    from lpft_bench.strategies import get_strategy
    from lpft_bench.strategies.module import AdaptationModule

    model = _small_classifier(0)
    pretrained = {k: v.detach().clone() for k, v in model.backbone.named_parameters()}
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1)
    (phase,) = get_strategy("l2-sp").phases()
    penalty = AdaptationModule(model, phase, phase_kind(phase.trains).trainability, [], 3, pretrained=pretrained).l2sp_penalty()
    # baseline_train.py: l2sp_weight (0.01) * sum of squared distances over every parameter but the head's.
    official = 0.01 * sum(((p - pretrained[k]) ** 2).sum() for k, p in model.backbone.named_parameters())
    torch.testing.assert_close(penalty, official)


def test_wise_ft_interpolates_batchnorm_statistics_by_default_and_its_ends_are_lp_and_lp_ft_exactly():
    import torch

    from lpft_bench.strategies import get_strategy
    from lpft_bench.strategies.posthoc import interpolate

    assert get_strategy("wise-ft").phases()[-1].reestimate_bn is False
    lp, lp_ft = _small_classifier(0), _small_classifier(1)
    lp_ft.train()(torch.randn(16, 3, 32, 32) + 1)  # LP-FT's BatchNorm statistics differ from LP's
    start, end = lp.state_dict(), lp_ft.state_dict()
    x = torch.randn(4, 3, 32, 32)
    wise = _small_classifier(2)
    for alpha, reference in ((0.0, lp), (1.0, lp_ft)):
        wise.load_state_dict(interpolate(start, end, alpha))
        with torch.no_grad():
            assert torch.equal(wise.eval()(x), reference.eval()(x))
    wise.load_state_dict(interpolate(start, end, 0.3))
    mean = "backbone.layer4.0.bn1.running_mean"
    torch.testing.assert_close(wise.state_dict()[mean], 0.7 * start[mean] + 0.3 * end[mean])


def test_paper_suite_domainnet_batch_64_and_imagenet_sgd_probe_on_a_cosine_schedule_sweeping_three_lrs():
    from lpft_bench.analysis.protocol import benchmark_protocol
    from lpft_bench.strategies import get_strategy
    from lpft_bench.suites import SUITES

    jobs = SUITES["paper"].expand(benchmarks=["domainnet", "imagenet"], strategies=["lp", "ft", "lp-ft"], seeds=[0])
    assert {j.hparams["batch_size"] for j in jobs if j.benchmark == "domainnet"} == {64}
    imagenet_lps = [j for j in jobs if j.benchmark == "imagenet" and j.strategy == "lp"]
    probes = [get_strategy("lp").phases(job.hparams)[0] for job in imagenet_lps]
    assert {(p.trains, p.epochs, p.schedule) for p in probes} == {("head", 5, "cosine")}
    # The authors' run_adaptation_experiments.py sweeps the ImageNet probe over lr 0.01, 0.03, 0.1 ...
    assert sorted(p.lr for p in probes) == [0.01, 0.03, 0.1]
    # ... and LP-FT starts from the lr-0.1 probe, whatever its fine-tuning learning rate.
    lpft_heads = {get_strategy("lp-ft").phases(j.hparams)[0].lr
                  for j in jobs if j.benchmark == "imagenet" and j.strategy == "lp-ft"}
    assert lpft_heads == {0.1}
    assert benchmark_protocol("imagenet")["lp"]["lr"] == [0.01, 0.03, 0.1]


def test_intervals_are_the_official_1_645_s_over_root_n_labelled_so_student_t_on_request():
    import math

    import pandas as pd

    from lpft_bench.analysis.tables import INTERVAL_LABELS, read_paper_tables, summary_table

    accuracies = [80.0, 82.0, 84.5]
    selected = pd.DataFrame({"strategy": "lp", "benchmark": "living17", "data": "d", "backbone": "b", "backbone_key": "k",
                             "eval_set": "id_test",
                             "split": "id", "acc": accuracies})
    s = pd.Series(accuracies).std(ddof=1)
    normal = summary_table(selected, "id")
    assert normal.loc["lp", "living17 90% CI"] == pytest.approx(round(1.645 * s / math.sqrt(3), 2))
    student = summary_table(selected, "id", interval="student-t")
    assert student.loc["lp", "living17 90% CI"] == pytest.approx(round(2.919986 * s / math.sqrt(3), 2))
    assert INTERVAL_LABELS["normal"] == "90% CI (1.645 s/sqrt(n))"
    # The paper's parenthesised figures are that interval, not a standard deviation.
    assert "ci90" in read_paper_tables().columns


def test_theory_pretrained_features_have_orthonormal_rows_distance_up_to_rotation_and_m_below_d_minus_k():
    from lpft_bench.analysis.theory import distance_up_to_rotation, make_problem, perturb_features

    rng = np.random.default_rng(0)
    problem = make_problem(d=12, k=2, m=5, n=20, rng=rng)
    pretrained = perturb_features(problem.true_features, 0.05, rng)
    np.testing.assert_allclose(pretrained @ pretrained.T, np.eye(2), atol=1e-12)
    assert 0 < distance_up_to_rotation(pretrained, problem.true_features) <= 0.05 + 1e-9
    rotation = np.array([[0.0, -1.0], [1.0, 0.0]])
    assert distance_up_to_rotation(rotation @ problem.true_features, problem.true_features) < 1e-12
    with pytest.raises(ValueError, match="m < d - k"):
        make_problem(d=12, k=2, m=10, n=20, rng=rng)


def test_the_paper_tables_cite_their_source_and_the_living17_ft_ood_row_is_the_cited_figure():
    import re

    from lpft_bench.analysis.tables import PAPER_TABLES, read_paper_tables

    text = PAPER_TABLES.read_text()
    assert "openreview.net/forum?id=UYneFzXSJWh" in text
    cited = float(re.search(r"cited: living17 ft ood (\d+\.\d)", text).group(1))
    paper = read_paper_tables()
    row = paper[(paper["split"] == "ood") & (paper["benchmark"] == "living17") & (paper["strategy"] == "ft")]
    assert row["acc"].tolist() == [cited] and row["ci90"].tolist() == [0.7]


def test_the_probe_settings_example_prints_a_row_per_setting_from_the_suites_own_pieces(tmp_path):
    """examples/probe_settings.py (the closing note's before/after LP table) on a fake folder benchmark."""
    import subprocess
    import sys
    from pathlib import Path

    from lpft_bench.datamodules import write_fake

    root = write_fake("folder", tmp_path, images_per_class=10)
    script = Path(__file__).resolve().parents[1] / "examples" / "probe_settings.py"
    printed = subprocess.run([sys.executable, str(script), str(root / "train"), str(root / "id_eval"),
                              "--backbone", "digits-resnet", "--seeds", "0", "1"],
                             capture_output=True, text=True, check=True).stdout
    rows = [line for line in printed.splitlines() if line.startswith(("| before", "| paper", "| clean"))]
    assert len(rows) == 3
    assert all(len(row.split("|")[2].split(",")) == 2 for row in rows)  # a chosen C per seed
