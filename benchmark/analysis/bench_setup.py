"""What every measurement of the bench shares: the benchmark, backbone and seed it measures on, how much of it a
run does (Scale), the model and data it starts from (Setup), and the Row each measurement fills."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import lightning as L

from lpft_bench.datamodules import ShiftDataModule, build_datamodule
from lpft_bench.models import Classifier, build_backbone, resolve_backbone
from lpft_bench.strategies import get_strategy

BENCHMARK = "digits"
BACKBONE = "digits-resnet"
SEED = 0
LOADER_WORKERS = 2  # the job's default is none (`--num-workers 0`); two is what a small machine can spare


@dataclass(frozen=True)
class Scale:
    """How much of each measurement a run does. `tiny` is a smoke run: its numbers say nothing."""

    benchmark_options: dict
    pretrained: bool  # tiny skips the backbone's pretraining (minutes on a CPU): timings do not depend on weights
    ft_epochs: int  # per timed fit; the first epoch is warm-up
    ft_repeats: int
    pipeline_epochs: int  # timed epochs per side, after one warm-up epoch each
    probe_C_stride: int  # the sweep uses every n-th of the paper's 50 values of C


SCALES = {
    "full": Scale({}, pretrained=True, ft_epochs=6, ft_repeats=7, pipeline_epochs=8, probe_C_stride=1),
    "tiny": Scale({"subset": 128}, pretrained=False, ft_epochs=3, ft_repeats=1, pipeline_epochs=1, probe_C_stride=10),
}


@dataclass
class Row:
    """One line of the table; `ratio` and `met` as the module docstring says."""

    id: str
    measurement: str
    ours: float
    reference: float
    unit: str
    ratio: float
    target: str = ""
    met: str = ""
    notes: str = ""


def judged(met: bool) -> str:
    return "met" if met else "not met"



# --- what is measured on -----------------------------------------------------------------------------------


@dataclass
class Setup:
    """The model and data every timed measurement starts from."""

    model: Classifier
    datamodule: ShiftDataModule
    data_config: dict
    workdir: Path


def build_setup(scale: Scale, workdir: Path) -> Setup:
    L.seed_everything(SEED, workers=True, verbose=False)
    backbone, data_config = build_backbone(resolve_backbone(BACKBONE), pretrained=scale.pretrained)
    batch_size = get_strategy("ft").hparams()["batch_size"]
    datamodule = build_datamodule(BENCHMARK, data_config=data_config, batch_size=batch_size, seed=SEED,
                                  **scale.benchmark_options)
    datamodule.setup("fit")
    return Setup(Classifier(backbone, datamodule.num_classes), datamodule, data_config, workdir)

