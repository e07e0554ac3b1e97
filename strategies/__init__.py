"""Adaptation strategies as phase schedules, registered by name."""
from __future__ import annotations

from dataclasses import replace

from lpft_bench.registry import Registry

from .grids import LogSpace
from .phases import Phase, Strategy

# Kumar et al.: C in logspace(-7, 2, 50), chosen on ID validation accuracy (a specification: never its floats).
PAPER_PROBE_CS = LogSpace(-7, 2, 50)
FT_LR_GRID = (3e-5, 1e-4, 3e-4, 1e-3, 3e-3, 1e-2)
LPFT_LR_GRID = (3e-7, 1e-6, 3e-6, 1e-5, 3e-5, 1e-4)
WISE_ALPHAS = tuple(i / 10 for i in range(11))
SOUP_LRS = (1e-3, 3e-3, 1e-2)
# Ren et al. App. C.2: ResNet-50's last blocks re-initialised, cumulatively from the top.
REINIT_CONFIGS = (("layer4.2",), ("layer4.1", "layer4.2"), ("layer4.0", "layer4.1", "layer4.2"))

_TRAINING = {"epochs": 10, "batch_size": 64, "head": "linear", "probe_size": 512}
_HEAD_PROBING = {"hp_epochs": 10, "hp_lr": 1e-2}


def _probe(hp: dict) -> Phase:
    """The paper's logistic-regression LP for a linear head; an MLP head is probed by SGD (as for large data),
    as the authors' ImageNet probe: a cosine schedule, evaluated every epoch, its best epoch on the selection
    set kept (baseline_train.py L429-440 at 36fb2ef saves ckp_best_<set>, and LP-FT loads ckp_best_val);
    `probe_seed` pins the probe to that seed's for every replication (run_adaptation_experiments.py L1022-1028)."""
    if hp.get("head", "linear") == "mlp" or hp.get("probe") == "sgd":
        return Phase("lp", trains="head", epochs=hp["hp_epochs"], lr=hp["hp_lr"], head_init="random",
                     schedule="cosine", validate_every=1, seed=hp.get("probe_seed"))
    if hp.get("probe_seed") is not None:
        raise ValueError("probe_seed pins an SGD probe (probe=sgd or head=mlp); the logistic probe is fitted per seed")
    return Phase("lp", trains="logistic-probe", probe_Cs=PAPER_PROBE_CS)


def _head_probe(hp: dict, label_smoothing: float = 0.0, also_train: tuple[str, ...] = ()) -> list[Phase]:
    """HP for τ = hp_epochs epochs (constant LR, so the head at epoch τ is an early stop of a longer HP)."""
    if hp["hp_epochs"] == 0:
        return []
    return [Phase("hp", trains="head", epochs=hp["hp_epochs"], lr=hp["hp_lr"], head_init="random",
                  label_smoothing=label_smoothing, schedule="constant", also_train=also_train,
                  reinit=also_train, validate_every=hp["hp_epochs"])]


def _finetune(hp: dict, batchnorm: str, head_init: str, label_smoothing: float = 0.0) -> Phase:
    return Phase("ft", trains="all", epochs=hp["epochs"], lr=hp["lr"], batchnorm=hp.get("batchnorm", batchnorm),
                 head_init=head_init, label_smoothing=label_smoothing)


def _label_smoothed_head_probe(hp: dict) -> list[Phase]:
    # Ren et al.'s Table 2 runs the reversed case on purpose ("opposite energy"): asked for by name, never by accident.
    if hp.get("opposite_energy"):
        if hp["ft_smoothing"] <= hp["hp_smoothing"]:
            raise ValueError(f"lshp-ft with opposite_energy needs ft_smoothing > hp_smoothing (got {hp['ft_smoothing']} "
                             f"<= {hp['hp_smoothing']})")
    elif hp["ft_smoothing"] > 0 and hp["ft_smoothing"] >= hp["hp_smoothing"]:
        raise ValueError(f"lshp-ft needs ft_smoothing < hp_smoothing (got {hp['ft_smoothing']} >= {hp['hp_smoothing']}): "
                         "otherwise the energy reserved by smoothing the head probe vanishes or reverses in FT "
                         "(opposite_energy=true runs that case deliberately)")
    return [*_head_probe(hp, hp["hp_smoothing"]), _finetune(hp, "train", _after_head_probe(hp), hp["ft_smoothing"])]


def _reinit_head_probe(hp: dict) -> list[Phase]:
    """Re-initialised blocks train only during HP: without an HP phase they would stay random through FT."""
    if hp["hp_epochs"] == 0 and hp["reinit_blocks"]:
        raise ValueError(f"reinit-ft re-initialises {list(hp['reinit_blocks'])} and trains them during head probing: "
                         "hp_epochs=0 has no head probing, so set hp_epochs > 0 (Ren et al. probe to convergence)")
    return [*_head_probe(hp, also_train=tuple(hp["reinit_blocks"])), _finetune(hp, "train", _after_head_probe(hp))]


def _after_head_probe(hp: dict) -> str:
    """τ = 0 means no HP phase: FT then starts from a fresh head, exactly as plain FT."""
    return "keep" if hp["hp_epochs"] > 0 else "random"


def _lp_ft(hp: dict) -> list[Phase]:
    return [_probe(hp), _finetune(hp, "eval", "keep")]


def _wise_ft(hp: dict) -> list[Phase]:
    """LP-FT's phases exactly (so a wise-ft job reuses the lp-ft job's results), then the interpolation."""
    return [*_lp_ft(hp), Phase("wise", trains="weight-interpolation", alphas=WISE_ALPHAS, reestimate_bn=hp["reestimate_bn"])]


def _surgical(hp: dict) -> list[Phase]:
    """The block trains from the LP head (a frozen head must already fit the task); Lee et al.'s first
    block is the stem with layer1."""
    groups = ("stem", "layer1") if hp["block"] == "layer1" else (hp["block"],)
    return [_probe(hp), replace(_finetune(hp, "eval", "keep"), trains="groups", train_groups=groups)]


def _soup(average: str):
    return lambda hp: [Phase("soup", trains="weight-average", average=average, ingredient=hp["ingredient"],
                             sweep_lrs=tuple(hp["lrs"]), reestimate_bn=hp["reestimate_bn"])]


_SOUP = {**_TRAINING, "ingredient": "ft", "lrs": SOUP_LRS, "reestimate_bn": True}


STRATEGIES: Registry[Strategy] = Registry("strategy", [
        Strategy(
            "scratch",
            "same architecture from random initialisation, everything trained",
            lambda hp: [_finetune(hp, "train", "random")],
            defaults={**_TRAINING, "lr": 1e-2, "batchnorm": "train"},
            pretrained=False,
        ),
        Strategy(
            "lp",
            "linear probe: cached eval-mode features, L2 logistic regression, C chosen on ID validation "
            "(head=mlp or probe=sgd: a head-only SGD probe)",
            lambda hp: [_probe(hp)],
            # batch_size and probe_size matter to the SGD probe only; they make its phase the same as lp-ft's.
            defaults={"head": "linear", "probe": "logistic", "batch_size": 64, "probe_size": 512, **_HEAD_PROBING},
        ),
        Strategy(
            "ft",
            "full fine-tuning from a fresh head, BatchNorm in train mode",
            lambda hp: [_finetune(hp, "train", "random")],
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train"},
        ),
        Strategy(
            "lp-ft",
            "linear probe, then full fine-tuning from exactly that head, BatchNorm in eval mode",
            _lp_ft,
            defaults={**_TRAINING, "lr": 1e-4, "batchnorm": "eval", "probe": "logistic", **_HEAD_PROBING},
            optional={"probe_seed": 0},
        ),
        Strategy(
            "hp-ft",
            "head probing for τ = hp_epochs epochs by SGD (backbone frozen), then full fine-tuning; τ = 0 is FT",
            lambda hp: [*_head_probe(hp), _finetune(hp, "train", _after_head_probe(hp))],
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", **_HEAD_PROBING},
        ),
        Strategy(
            "lshp-ft",
            "head probing with label smoothing η = hp_smoothing, then FT with η_FT = ft_smoothing < η",
            lambda hp: _label_smoothed_head_probe(hp),
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", **_HEAD_PROBING,
                      "hp_smoothing": 0.3, "ft_smoothing": 0.0},
            optional={"opposite_energy": True},
        ),
        Strategy(
            "mlp-head",
            "a 2-layer head (hidden 256) head-probed, then FT (head=mlp also works with lp, ft, lp-ft, hp-ft)",
            lambda hp: [*_head_probe(hp), _finetune(hp, "train", _after_head_probe(hp))],
            defaults={**_TRAINING, "head": "mlp", "lr": 1e-3, "batchnorm": "train", **_HEAD_PROBING},
        ),
        Strategy(
            "reinit-ft",
            "re-initialise the named backbone blocks with the model's own initialiser (ResNet-50 layer4.2; "
            "cumulative configurations from the top), train them with the head during HP, then fine-tune everything",
            _reinit_head_probe,
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", **_HEAD_PROBING,
                      "reinit_blocks": REINIT_CONFIGS[0]},
        ),
        # After the papers: the robust fine-tuning baselines compared with LP-FT today.
        Strategy(
            "wise-ft",
            "LP-FT, then WiSE-FT: every state-dict entry, BatchNorm statistics included, (1 - α)·(pretrained + LP "
            "head) + α·(fine-tuned) for α in 0, 0.1, ..., 1, as the reference implementation "
            "(reestimate_bn=True: statistics re-estimated on the training data), α chosen on ID validation",
            _wise_ft,
            defaults={**_TRAINING, "lr": 1e-4, "batchnorm": "eval", "probe": "logistic", **_HEAD_PROBING,
                      "reestimate_bn": False},
        ),
        Strategy(
            "l2-sp",
            "FT with the L2-SP penalty (l2sp_alpha/2)·||w - w0||² towards the pretrained backbone w0, "
            "plus (l2sp_beta/2)·||head||²; the default is the authors' 0.01·||w - w0||²",
            lambda hp: [replace(_finetune(hp, "train", "random"), l2sp_alpha=hp["l2sp_alpha"], l2sp_beta=hp["l2sp_beta"])],
            # α/2 = 0.01: baseline_train.py adds l2sp_weight (0.01) × Σ‖w − w0‖² over all but the head.
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", "l2sp_alpha": 0.02, "l2sp_beta": 0.0},
        ),
        Strategy(
            "llrd",
            "FT with layer-wise learning-rate decay: lr x lr_decay^(depth from the top), the head at lr "
            "(ResNet: layer4, ..., layer1, stem; ViT: blocks.n-1, ..., blocks.0, patch embedding)",
            lambda hp: [replace(_finetune(hp, "train", "random"), lr_decay=hp["lr_decay"])],
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", "lr_decay": 0.65},
        ),
        Strategy(
            "discriminative-lr",
            "FT with the whole backbone at backbone_lr_ratio x the head's learning rate",
            lambda hp: [replace(_finetune(hp, "train", "random"), backbone_lr_ratio=hp["backbone_lr_ratio"])],
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", "backbone_lr_ratio": 0.1},
        ),
        Strategy(
            "bitfit",
            "BitFit: a fresh head and every bias of the backbone train, its weights and BatchNorm statistics stay "
            "(Ben Zaken et al. 2022)",
            lambda hp: [replace(_finetune(hp, "eval", "random"), trains="biases")],
            defaults={**_TRAINING, "lr": 1e-2},
        ),
        Strategy(
            "surgical-ft",
            "LP, then only one block group trains (block: layer1 = stem + layer1, layer2, layer3, layer4 or "
            "head), BatchNorm in eval mode (Lee et al. 2023)",
            _surgical,
            defaults={**_TRAINING, "lr": 1e-3, "probe": "logistic", **_HEAD_PROBING, "block": "layer1"},
        ),
        Strategy(
            "freeze-embed",
            "FT with the embedding frozen: a ViT's patch embedding (with its tokens), a CNN's stem",
            lambda hp: [replace(_finetune(hp, "train", "random"), frozen_groups=("stem",))],
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train"},
        ),
        Strategy(
            "gradual-unfreeze",
            "FT unfreezing top-down: the head alone, then one more layer group every unfreeze_every epochs",
            lambda hp: [replace(_finetune(hp, "train", "random"), unfreeze_every=hp["unfreeze_every"])],
            defaults={**_TRAINING, "lr": 1e-3, "batchnorm": "train", "unfreeze_every": 1},
        ),
        Strategy(
            "uniform-soup",
            "the uniform average of the weights of the `ingredient` strategy's runs at each of `lrs` "
            "(same seed), BatchNorm statistics re-estimated",
            _soup("uniform"),
            defaults=_SOUP,
        ),
        Strategy(
            "greedy-soup",
            "the greedy soup of the `ingredient` strategy's runs at each of `lrs` (same seed): added in order "
            "of ID validation accuracy while it does not drop",
            _soup("greedy"),
            defaults=_SOUP,
        ),
])


def get_strategy(name: str) -> Strategy:
    return STRATEGIES.get(name)


__all__ = ["FT_LR_GRID", "LPFT_LR_GRID", "PAPER_PROBE_CS", "REINIT_CONFIGS", "SOUP_LRS", "STRATEGIES", "WISE_ALPHAS", "Phase", "Strategy",
           "get_strategy"]
