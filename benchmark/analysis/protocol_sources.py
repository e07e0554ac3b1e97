"""Where each item of `lpft-bench protocol` comes from: a file and its lines at a commit of the authors' code
(AnanyaKumar/transfer_learning); every line range below was read at that commit. (No item cites the paper's
text: every one is settled by the code.)

The first release, 36fb2ef (2022-04-03, "Release (#2)"), is what the paper ran; 13c3e2b (2022-12-30, the
repository's newest commit) and 789da4d (2022-01-18, before the release) are cited only where the release is
silent, and say so.
"""
from __future__ import annotations

REPOSITORY = "AnanyaKumar/transfer_learning"
RELEASE = "36fb2ef0d9e3fd3c82682e8c6f9258d73ee59cdc"
LATER = "13c3e2bbb8a34bbb781e28cee96ddf20bed5f76f"
BEFORE_RELEASE = "789da4d"  # the parent of 3aef62d, "Remove redundant files", which deleted the notebook cited
RUN = "scripts/run_adaptation_experiments.py"
TRAIN = "unlabeled_extrapolation/baseline_train.py"
CONFIGS = "configs/adaptation/"


def cite(path: str, lines: str, what: str, commit: str = RELEASE) -> str:
    return f"{path}:{lines}@{commit[:7]} ({what})"


TRANSFER = cite(CONFIGS + "resnet50_transfer.yaml", "L5", "batch_size: 64, inherited by every benchmark config")
OPTIMIZER = cite(CONFIGS + "resnet50_transfer.yaml", "L13-17", "torch.optim.SGD, momentum 0.9, no weight decay")
SELECTION = [cite(TRAIN, "L429-440", "every epoch, the best checkpoint per early_stop_dataset_names set"),
             cite("scripts/summarize_results.py", "L23-36", "the epoch row at the maximum of val_metric"),
             cite("scripts/summarize_all_results.py", "L47", "the learning rate with the best mean val_metric")]
INTERVAL = cite("scripts/summarize_all_results.py", "L40", "1.645 * std / sqrt(count)")
STRATEGIES = [cite(RUN, "L1053-1054", "lp on ImageNet: torch_linprobe, a head-only SGD probe"),
              cite(RUN, "L1086-1104", "lp elsewhere: linprobe, the logistic probe on extracted features"),
              cite(RUN, "L939-1036", "ft: fine_tuning_experiments, a fresh head, everything trained"),
              cite(RUN, "L1119-1166", "lp-ft: lp_then_ft_valmode, FT from the LP weights in val mode")]
SEEDS = cite(RUN, "L1053-1054, L1119-1155", "num_replications=3; LP-FT replication i from LP weights_i")
LR_GRIDS = {
    "ft": cite(RUN, "L858", "SWEEP_LRS 3e-5 ... 1e-2"),
    "lp-ft": cite(RUN, "L1119-1126", "lp_then_ft val_mode sweep 1e-4 ... 3e-7"),
}
BATCHNORM = [cite(CONFIGS + "resnet50_transfer.yaml", "L11", "FT: use_net_val_mode False, BatchNorm in train mode"),
             cite(RUN, "L1124-1126, L1136-1137", "LP-FT: _valmode, use_net_val_mode True"),
             cite(TRAIN, "L157-161", "LP: use_net_val_mode set for linear probing")]
LOGISTIC_PROBE = [cite("unlabeled_extrapolation/log_reg_sk.py", "L26-35, L37-47",
                       "one scalar mean and std over the training features; weights mapped back"),
                  cite("unlabeled_extrapolation/log_reg_sk.py", "L50-55", "warm-started LogisticRegression, "
                       "max_iter 200, C over logspace(-7, 2)"),
                  cite(RUN, "L310-331", "num_reg_values=50; aug=True: training features from the train transform")]
IMAGENET_PROBE = [cite(RUN, "L965-971", "torch_linprobe: ImageNet lrs 0.01, 0.03, 0.1"),
                  cite(RUN, "L1018, L1026", "the probe run: torch_linprobe_epochs5, T_max 5"),
                  cite(TRAIN, "L389-440", "evaluated every epoch, ckp_best_val kept (early stop on 'val')"),
                  cite(CONFIGS + "datasets_imagenet.yaml", "L59-60", "early_stop_dataset_names: val"),
                  cite(RUN, "L1013-1028", "every LP-FT replication loads the seed-0, lr-0.1 probe's ckp_best_val")]
CONFIG_OF = {"living17": "living17.yaml", "entity30": "entity30.yaml", "cifar10": "cifar_stl.yaml",
             "domainnet": "domainnet.yaml", "fmow": "fmow.yaml", "imagenet": "imagenet.yaml"}
# (the benchmark config's epochs line, its scheduler lines)
EPOCHS_AND_SCHEDULE = {"living17": ("L7", "L13-16"), "entity30": ("L7", "L16-19"), "cifar10": ("L7", "L16-19"),
                       "domainnet": ("L7", "L14-17"), "fmow": ("L7", "L16-19"), "imagenet": ("L7", "L15-18")}
TRANSFORMS = {
    "living17": cite(CONFIGS + "datasets_living17.yaml", "L14-35", "RandomResizedCrop 224 + flip; resize 256, "
                     "centre crop 224; Normalize std (0.228, 0.224, 0.225)"),
    "entity30": cite(CONFIGS + "datasets_entity30.yaml", "L14-35", "as Living-17's"),
    "cifar10": cite(CONFIGS + "datasets_cifar_stl.yaml", "L11-29", "resize to 224, no crop; Normalize std "
                    "(0.228, 0.224, 0.225)"),
    "domainnet": [cite(CONFIGS + "datasets_domainnet.yaml", "L15-31", "resize 256x256 bicubic, random crop 224, "
                       "flip; resize 224x224 bicubic; no Normalize"),
                  cite("unlabeled_extrapolation/models/clip_model.py", "L17-19, L113", "CLIP's own mean and std, "
                       "applied inside the model")],
    "fmow": cite(CONFIGS + "datasets_fmow.yaml", "L14-27", "the 224x224 images as they are; Normalize training std "
                 "(0.2289, 0.224, 0.225), evaluation std (0.229, 0.224, 0.225)"),
    "imagenet": [cite(CONFIGS + "datasets_imagenet.yaml", "L11-29", "resize 224 bicubic, centre crop 224, "
                      "no augmentation, no Normalize"),
                 cite("unlabeled_extrapolation/models/clip_model.py", "L17-19, L113", "CLIP's normalisation in the model")],
}
BACKBONE = {
    "living17": cite(RUN, "L704-712", "moco_resnet50: moco_v2_800ep_pretrain.pth.tar"),
    "entity30": cite(RUN, "L704-712", "moco_resnet50: moco_v2_800ep_pretrain.pth.tar"),
    "cifar10": cite(RUN, "L704-712", "moco_resnet50: moco_v2_800ep_pretrain.pth.tar"),
    "domainnet": cite(CONFIGS + "domainnet.yaml", "L9-12", "ClipModel RN50"),
    "fmow": cite(RUN, "L686-694", "mocotp_fmow_resnet50: mocotp_checkpoint_0200.pth.tar"),
    "imagenet": cite(RUN, "L763-769", "clip_vit_b16 (imagenet.yaml L10-13 names RN50; the ViT-B/16 is the "
                     "--model_name given at launch)"),
}
EVAL_SETS = {
    "living17": cite(CONFIGS + "datasets_living17.yaml", "L37-56", "source_val (ID), target_val (OOD)"),
    "entity30": cite(CONFIGS + "datasets_entity30.yaml", "L37-56", "source_val (ID), target_val (OOD)"),
    "cifar10": [cite(CONFIGS + "datasets_cifar_stl.yaml", "L31-51", "cifar10-test (ID), stl-test (OOD); "
                     "CIFAR-10.1 is in no config"),
                cite("unlabeled_extrapolation/datasets/cifar10p1.py", "L47", "CIFAR10p1 reads version 'v6' by default"),
                cite("scripts/get_logits_for_ensembling.ipynb", "L453-454, L467", "the authors' CIFAR-10.1 "
                     "evaluation loads cifar10.1_v6_{labels,data}.npy", BEFORE_RELEASE)],
    "domainnet": [cite(CONFIGS + "datasets_domainnet.yaml", "L33-69", "sketch_val (ID); real, painting, clipart "
                       "evaluated; early stopping on sketch_val and real_val only"),
                  cite(RUN, "L587-600", "the summary reports each domain's accuracy apart, averaging none"),
                  cite("scripts/freeze-embed-paper-fine-tuning-results.ipynb", "L2093-2096", "the authors' later "
                       "summary: 'DomainNet OOD' is test_acc/real_val", LATER)],
    "fmow": cite(CONFIGS + "datasets_fmow.yaml", "L29-51", "americas_val (ID), africa_val, europe_val"),
    "imagenet": cite(CONFIGS + "datasets_imagenet.yaml", "L31-56", "val (ID), renditions, imagenet-a, v2, sketch"),
}


def protocol_sources(benchmark: str) -> dict:
    """Each card item's sources for `benchmark` (a paper-suite benchmark), and the commit they were read at."""
    config = CONFIGS + CONFIG_OF[benchmark]
    epochs, schedule = EPOCHS_AND_SCHEDULE[benchmark]
    imagenet = benchmark == "imagenet"
    batch = cite(config, "L8", "batch_size: 128") if imagenet else TRANSFER
    if benchmark == "domainnet":
        batch = [cite(config, "L2-4", "inherits resnet50_transfer.yaml and sets no batch size"), TRANSFER]
    return {
        "checked_against": f"{REPOSITORY}@{RELEASE} (first release, 2022-04-03: what the paper ran)",
        "mode": cite(RUN, "L451-615", "paper: each dataset's val_metric, the accuracy that selects, is its ID "
                     "evaluation set"),
        "strategies": STRATEGIES,
        "backbone": BACKBONE[benchmark],
        "feature_dim": BACKBONE[benchmark],
        "train_transform": TRANSFORMS[benchmark],
        "eval_transform": TRANSFORMS[benchmark],
        "eval_sets": EVAL_SETS[benchmark],
        "lp": IMAGENET_PROBE if imagenet else LOGISTIC_PROBE,
        "optimizer": OPTIMIZER,
        "schedule": cite(config, schedule, "CosineAnnealingLR, T_max = epochs, stepped per epoch"),
        "epochs": cite(config, epochs, "epochs"),
        "batch_size": batch,
        "lr_grids": {"ft": cite(RUN, "L946, L951-952", "ImageNet FT: 1e-4, 3e-4, 1e-3"),
                     "lp-ft": cite(RUN, "L946, L949-950", "ImageNet LP-FT phase 2: 1e-5, 3e-5, 1e-4"),
                     "lp": IMAGENET_PROBE[0]} if imagenet else {**LR_GRIDS, "lp": LOGISTIC_PROBE[1]},
        "batchnorm": BATCHNORM,
        "selection": SELECTION,
        "seeds": SEEDS,
        "interval": INTERVAL,
    }
