"""The quickstart's table cells computed by hand: plain PyTorch and scikit-learn, only what the tables read.

Written from the suite's protocol as a yardstick for `lpft-bench bench --end-to-end` (how much the suite's
machinery costs over the same computation) and as a readable statement of that protocol. It takes the digits
data and the shipped backbone from the package (they are the benchmark, not its machinery) and does the rest
itself:

- LP: eval-mode features (batches of 256), standardised per feature, L2 logistic regression warm-started along
  C = logspace(-7, 2, 50), C chosen on ID validation accuracy (ties: the lower validation log-loss).
- oracle: the same probe fitted on half of each OOD set (C chosen on a fifth of that half, both rotations of a
  digit on one side), scored on the other half; the features do not depend on the seed, so once.
- FT, scratch, LP-FT: SGD (momentum 0.9) with a per-epoch cosine schedule, batch 64 in the order
  `DistributedSampler(seed=seed)` gives epoch by epoch; seeded as a job is (seed, backbone, head, fresh head);
  LP-FT starts from the probe's head with BatchNorm in eval mode; channels-last, as the suite trains. Per epoch only ID validation is evaluated;
  the other sets once, on the selected (earliest best) epoch's weights.
- each learning rate grid: the best mean ID validation accuracy over seeds; cells: mean and 1.645 s/sqrt(n)
  over seeds, rounded as the tables are.

    python -m lpft_bench.analysis.plain_quickstart [--epochs N] [--seeds 0 1 2] [--json FILE]
"""
from __future__ import annotations

import argparse
import copy
import json
import math
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.exceptions import ConvergenceWarning
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from lpft_bench.datamodules.digits import DigitsShift
from lpft_bench.models import Classifier, build_backbone, resolve_backbone

BACKBONE = "digits-resnet"
EPOCHS, BATCH, EVAL_BATCH, SEEDS = 10, 64, 256, (0, 1, 2)
LR_GRIDS = {"scratch": (3e-2,), "ft": (1e-2, 3e-2, 1e-1, 3e-1), "lp-ft": (1e-4, 3e-4, 1e-3)}
CS = np.logspace(-7, 2, 50)
SELECTION, ID_TEST, OOD = "id_val", "id_test", ("rotated-mild", "rotated-strong")


def sets_of(seed: int, data_config: dict) -> dict[str, tuple[torch.Tensor, torch.Tensor, np.ndarray | None]]:
    """name -> (images, labels, groups) of the seed's split; training under "train"."""
    splits = DigitsShift(data_config=data_config, seed=seed).splits
    sets = {"train": (*splits.train.tensors, None)}
    for eval_set in splits.eval_sets:
        sets[eval_set.name] = (*eval_set.dataset.tensors, eval_set.groups)
    return sets


@torch.no_grad()
def features(backbone: torch.nn.Module, images: torch.Tensor) -> np.ndarray:
    backbone.eval()
    return torch.cat([backbone(images[i : i + EVAL_BATCH]) for i in range(0, len(images), EVAL_BATCH)]).numpy()


def log_loss(classifier: LogisticRegression, x: np.ndarray, y: np.ndarray) -> float:
    known = np.isin(y, classifier.classes_)
    log_probabilities = classifier.predict_log_proba(x[known])
    return float(-log_probabilities[np.arange(known.sum()), np.searchsorted(classifier.classes_, y[known])].mean())


def probe(train_x, train_y, val_x, val_y) -> tuple[np.ndarray, np.ndarray]:
    """(weight, bias) on the raw feature scale of the C path's best point on (val_x, val_y)."""
    scaler = StandardScaler().fit(train_x)
    mean, scale = scaler.mean_, scaler.scale_
    xs_train, xs_val = (train_x - mean) / scale, (val_x - mean) / scale
    classifier = LogisticRegression(C=CS[0], max_iter=1000, warm_start=True)
    best_score, best = None, None
    for C in CS:
        classifier.set_params(C=C)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            classifier.fit(xs_train, train_y)
        score = (float((classifier.predict(xs_val) == val_y).mean()), -log_loss(classifier, xs_val, val_y))
        if best_score is None or score > best_score:
            best_score, best = score, (classifier.coef_.copy(), classifier.intercept_.copy(), classifier.classes_.copy())
    coef, intercept, classes = best
    weight, bias = np.zeros((10, train_x.shape[1])), np.zeros(10)
    weight[classes] = coef / scale
    bias[classes] = intercept - (coef * mean / scale).sum(axis=1)
    return weight.astype(np.float32), bias.astype(np.float32)


def halves(groups: np.ndarray, indices: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    unique = np.unique(groups[indices])
    taken = np.isin(groups[indices], unique[np.random.default_rng(seed).permutation(len(unique))[: max(1, int(len(unique) * fraction))]])
    return indices[~taken], indices[taken]


def oracle(x: np.ndarray, y: np.ndarray, groups: np.ndarray) -> float:
    fit, held_out = halves(groups, np.arange(len(y)), 0.5, 0)
    train, val = halves(groups, fit, 0.2, 1)
    weight, bias = probe(x[train], y[train], x[val], y[val])
    seen = np.unique(y[train])
    return float((seen[(x[held_out] @ weight.T + bias)[:, seen].argmax(-1)] == y[held_out]).mean())


def accuracy(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor) -> float:
    """As torchmetrics' micro accuracy computes it (float32 counts)."""
    model.eval()
    with torch.no_grad():
        correct = sum(int((model(images[i : i + EVAL_BATCH]).argmax(-1) == labels[i : i + EVAL_BATCH]).sum())
                      for i in range(0, len(images), EVAL_BATCH))
    return float(torch.tensor(float(correct)) / torch.tensor(float(len(labels))))


def train(model: Classifier, sets: dict, seed: int, lr: float, epochs: int, batchnorm_eval: bool) -> dict[str, float]:
    """SGD over `epochs`; ID validation each epoch; every set's accuracy at the earliest best epoch."""
    images, labels, _ = sets["train"]
    model.to(memory_format=torch.channels_last)  # as the suite trains on a CPU: faster, the same parameters
    optimiser = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=epochs)
    best_accuracy, best_state = -1.0, None
    for epoch in range(epochs):
        model.train()
        if batchnorm_eval:
            for module in model.modules():
                if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
                    module.eval()
        order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed + epoch))
        diverged = False
        for start in range(0, len(images), BATCH):
            batch = order[start : start + BATCH]
            loss = F.cross_entropy(model(images[batch]), labels[batch])
            optimiser.zero_grad()
            loss.backward()
            if not torch.isfinite(loss):
                diverged = True
                break
            optimiser.step()
        if diverged:
            break
        selection = accuracy(model, *sets[SELECTION][:2])
        if selection > best_accuracy:
            best_accuracy, best_state = selection, copy.deepcopy(model.state_dict())
        schedule.step()
    if best_state is None:
        return {}
    model.load_state_dict(best_state)
    return {SELECTION: best_accuracy, **{name: accuracy(model, *sets[name][:2]) for name in (ID_TEST, *OOD)}}


def new_model(seed: int, pretrained: bool) -> tuple[Classifier, dict]:
    """Seeded as a job: the backbone, the head, then the phase's fresh head, in that order."""
    torch.manual_seed(seed)
    backbone, data_config = build_backbone(resolve_backbone(BACKBONE), pretrained=pretrained)
    model = Classifier(backbone, 10)
    return model, data_config


def run_seed(seed: int, epochs: int, fixed: dict) -> dict:
    """strategy -> lr (None: no grid) -> eval set -> accuracy for one seed. `fixed`: the features of the sets
    that do not depend on the seed (ID test, OOD), extracted by the first seed, and the oracle's accuracies."""
    results: dict = {"lp": {}, "ft": {}, "lp-ft": {}, "scratch": {}}
    model, data_config = new_model(seed, pretrained=True)
    sets = sets_of(seed, data_config)
    pretrained_state = copy.deepcopy(model.state_dict())
    for name in (ID_TEST, *OOD):
        if name not in fixed:
            fixed[name] = features(model.backbone, sets[name][0])
    x = {**fixed, **{name: features(model.backbone, sets[name][0]) for name in ("train", SELECTION)}}
    y = {name: sets[name][1].numpy() for name in sets}
    weight, bias = probe(x["train"], y["train"], x[SELECTION], y[SELECTION])
    results["lp"][None] = {name: float(((x[name] @ weight.T + bias).argmax(-1) == y[name]).mean())
                           for name in (SELECTION, ID_TEST, *OOD)}
    if "oracle" not in fixed:
        fixed["oracle"] = {name: oracle(x[name], y[name], sets[name][2]) for name in OOD}
    for lr in LR_GRIDS["lp-ft"]:
        model.load_state_dict(pretrained_state)
        with torch.no_grad():
            model.head.weight.copy_(torch.from_numpy(weight))
            model.head.bias.copy_(torch.from_numpy(bias))
        results["lp-ft"][lr] = train(model, sets, seed, lr, epochs, batchnorm_eval=True)
    for strategy, pretrained in (("ft", True), ("scratch", False)):
        for lr in LR_GRIDS[strategy]:
            model, _ = new_model(seed, pretrained)
            model.head.reset_parameters()
            results[strategy][lr] = train(model, sets, seed, lr, epochs, batchnorm_eval=False)
    return results


def cell(values: list[float]) -> tuple[float, float, int]:
    """(mean, 90% half-width, n) in %, rounded as the tables are."""
    percent = np.array(values) * 100.0
    half = 1.645 * percent.std(ddof=1) / math.sqrt(len(percent)) if len(percent) > 1 else float("nan")
    return round(float(percent.mean()), 2), round(float(half), 2), len(percent)


def quickstart_cells(epochs: int = EPOCHS, seeds: tuple[int, ...] = SEEDS) -> dict:
    """{"cells": {"strategy|column": [mean, half-width, n]}, "selected": {strategy: lr}}."""
    fixed: dict = {}
    per_seed = [run_seed(seed, epochs, fixed) for seed in seeds]
    oracle_accuracy = fixed["oracle"]
    cells, selected = {}, {}
    for strategy in ("lp", "ft", "lp-ft", "scratch"):
        grid = list(per_seed[0][strategy])
        # The tables order hyperparameters by their JSON text and keep the first of equal means.
        grid.sort(key=lambda lr: json.dumps({"lr": lr}))
        scores = [np.mean([100.0 * run[strategy][lr].get(SELECTION, -1) for run in per_seed]) for lr in grid]
        lr = grid[int(np.argmax(scores))]
        selected[strategy] = lr
        runs = [run[strategy][lr] for run in per_seed if run[strategy][lr]]
        cells[f"{strategy}|digits"] = cell([run[ID_TEST] for run in runs])
        for name in OOD:
            cells[f"{strategy}|digits:{name}"] = cell([run[name] for run in runs])
    for name in OOD:
        cells[f"oracle|digits:{name}"] = cell([oracle_accuracy[name]] * len(seeds))
    return {"cells": cells, "selected": {k: v for k, v in selected.items() if v is not None}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--epochs", type=int, default=EPOCHS)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument("--json", help="also write the cells to this file")
    args = parser.parse_args(argv)
    result = quickstart_cells(args.epochs, tuple(args.seeds))
    for key, (mean, half, n) in sorted(result["cells"].items()):
        print(f"{key:32s} {mean:6.2f} ± {half:.2f} (n={n})")
    print("selected:", ", ".join(f"{k} lr={v:g}" for k, v in result["selected"].items()))
    if args.json:
        with open(args.json, "w") as handle:
            json.dump(result, handle, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
