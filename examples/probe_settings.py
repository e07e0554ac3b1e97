"""The linear probe under each of its settings, on real features: how much the protocol moves LP.

    python examples/probe_settings.py TRAIN_DIR TEST_DIR [--backbone efficientnet-lite0] [--seeds 0 1 2]

TRAIN_DIR and TEST_DIR are image folders (<class>/<image>), as the `folder` benchmark reads them. Features come
from the suite's own pieces: the backbone as registered, the folder benchmark's transforms and, per seed, its
held-out ID validation split (clean mode's), so every row selects C on the same validation images of a seed
and is scored on TEST_DIR. Rows: the probe before issue 11 (per-feature standardisation, max_iter 1000, the evaluation view,
ties to the smaller C), the paper's (one scalar mean and std, max_iter 200, one seeded augmented view per
training image, ties to the smaller C) and clean mode's (as before, ties broken by validation log-loss).
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from lpft_bench.datamodules import build_datamodule
from lpft_bench.datamodules.base import ID_TEST, ID_VAL
from lpft_bench.models import build_backbone, resolve_backbone
from lpft_bench.strategies import PAPER_PROBE_CS
from lpft_bench.strategies.linear_probe import PROBE_SETTINGS, ProbeSettings, extract_features, fit_logistic_path

SETTINGS = {
    "before (per-feature, 1000 iter, eval view, smaller C)":
        ProbeSettings(standardise="per-feature", max_iter=1000, ties="smaller-C", features_view="eval-transform"),
    "paper (scalar, 200 iter, augmented view, smaller C)": PROBE_SETTINGS["paper"],
    "clean (per-feature, 1000 iter, eval view, val log-loss)": PROBE_SETTINGS["clean"],
}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("train_dir")
    parser.add_argument("test_dir")
    parser.add_argument("--backbone", default="efficientnet-lite0")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args = parser.parse_args(argv)
    torch.set_grad_enabled(False)
    backbone, data_config = build_backbone(resolve_backbone(args.backbone))
    features = {}  # (seed, view): each seed holds out its own validation images, as a job of that seed does
    for seed in args.seeds:
        dm = build_datamodule("folder", train=args.train_dir, id_eval=args.test_dir, data_config=data_config,
                              mode="clean", seed=seed)
        sets = {s.name: s.dataset for s in dm.eval_sets}
        for name, dataset in (("eval-transform", dm.splits.train_eval), (ID_VAL, sets[ID_VAL])):
            features[seed, name] = extract_features(backbone, dm.eval_loader(dataset))
        if ID_TEST not in features:
            features[ID_TEST] = extract_features(backbone, dm.eval_loader(sets[ID_TEST]))
        torch.manual_seed(seed)  # one augmented view per image, drawn from the seed (as the probe phase does)
        features[seed, "train-transform"] = extract_features(backbone, dm.eval_loader(dm.splits.train))
    sizes = {"train": len(features[seed, "eval-transform"][1]), ID_VAL: len(features[seed, ID_VAL][1]),
             ID_TEST: len(features[ID_TEST][1])}
    print(f"{args.backbone} features: {sizes}; C chosen on {ID_VAL} among {len(PAPER_PROBE_CS)} values\n")
    print(f"| probe | chosen C per seed | {ID_TEST} accuracy per seed | mean |")
    print("|---|---|---|---|")
    for label, settings in SETTINGS.items():
        chosen, accuracies = [], []
        for seed in args.seeds:
            probe = fit_logistic_path(*features[seed, settings.features_view], *features[seed, ID_VAL], PAPER_PROBE_CS,
                                      dm.num_classes, settings)
            test_x, test_y = features[ID_TEST]
            chosen.append(f"{probe.C:.3g}")
            accuracies.append(100 * float((probe.logits(test_x).argmax(-1) == test_y).mean()))
        print(f"| {label} | {', '.join(chosen)} | {', '.join(f'{a:.1f}' for a in accuracies)} | "
              f"{np.mean(accuracies):.2f} |")


if __name__ == "__main__":
    main()
