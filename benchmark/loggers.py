"""Lightning's loggers for a phase: always the CSV log in the store, plus the one the user chose, the run named by
job id and phase and tagged with the job's meaning (so a dashboard groups what the store groups). Each choice is
a registered `LoggerChoice`; Lightning is imported only when a logger is made."""
from __future__ import annotations

import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from lpft_bench.errors import UsageError
from lpft_bench.registry import Registry


@dataclass(frozen=True)
class LoggerChoice:
    """`package`: what `pip install 'lpft-bench[<name>]'` brings; `make(job_dir, phase_key, job_id, meaning)`:
    the Lightning logger beside the CSV log (None: the CSV log alone)."""

    name: str
    package: str | None
    make: Callable[[Path, str, str, dict], object]


def _tensorboard(job_dir: Path, phase_key: str, job_id: str, meaning: dict):
    from lightning.pytorch.loggers import TensorBoardLogger

    return TensorBoardLogger(job_dir, name="tensorboard", version=phase_key)


def _wandb(job_dir: Path, phase_key: str, job_id: str, meaning: dict):
    from lightning.pytorch.loggers import WandbLogger

    logger = WandbLogger(name=f"{job_id}/{phase_key}", group=job_id, save_dir=str(job_dir))
    logger.experiment.config.update({"job": meaning}, allow_val_change=True)
    return logger


def _mlflow(job_dir: Path, phase_key: str, job_id: str, meaning: dict):
    from lightning.pytorch.loggers import MLFlowLogger

    tags = {"job_id": job_id, "phase": phase_key, "meaning": json.dumps(meaning, sort_keys=True, default=str)[:5000]}
    return MLFlowLogger(experiment_name="lpft-bench", run_name=f"{job_id}/{phase_key}", tags=tags)


LOGGERS: Registry[LoggerChoice] = Registry("logger", [
    LoggerChoice("csv", None, lambda *args: None),
    LoggerChoice("tensorboard", "tensorboard", _tensorboard),
    LoggerChoice("wandb", "wandb", _wandb),
    LoggerChoice("mlflow", "mlflow", _mlflow),
])


def check_logger(name: str) -> None:
    """Before anything trains: the chosen logger exists and its package is installed."""
    package = LOGGERS.get(name).package
    if package and importlib.util.find_spec(package) is None:
        raise UsageError(f"--logger {name} needs the {package} package: pip install 'lpft-bench[{name}]'")


def phase_loggers(name: str, job_dir: Path, phase_key: str, job_id: str, meaning: dict) -> list:
    from lightning.pytorch.loggers import CSVLogger

    from lpft_bench.engine.store import LOGS

    chosen = LOGGERS.get(name).make(job_dir, phase_key, job_id, meaning)
    return [CSVLogger(job_dir, name=LOGS, version=phase_key), *([chosen] if chosen is not None else [])]
