"""Lightning's loggers for a phase: always the CSV log in the store, plus the one the user chose, the run named by
job id and phase and tagged with the job's meaning (so a dashboard groups what the store groups)."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

from lightning.pytorch.loggers import CSVLogger, Logger, MLFlowLogger, TensorBoardLogger, WandbLogger

from lpft_bench.errors import UsageError

LOGGERS = {"csv": None, "tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}  # name -> package


def check_logger(name: str) -> None:
    """Before anything trains: the chosen logger exists and its package is installed."""
    if name not in LOGGERS:
        raise UsageError(f"unknown logger {name!r}; choose one of {', '.join(LOGGERS)}")
    package = LOGGERS[name]
    if package and importlib.util.find_spec(package) is None:
        raise UsageError(f"--logger {name} needs the {package} package: pip install 'lpft-bench[{name}]'")


def phase_loggers(name: str, job_dir: Path, phase_key: str, job_id: str, meaning: dict) -> list[Logger]:
    loggers: list[Logger] = [CSVLogger(job_dir, name="logs", version=phase_key)]
    run_name = f"{job_id}/{phase_key}"
    if name == "tensorboard":
        loggers.append(TensorBoardLogger(job_dir, name="tensorboard", version=phase_key))
    elif name == "wandb":
        logger = WandbLogger(name=run_name, group=job_id, save_dir=str(job_dir))
        logger.experiment.config.update({"job": meaning}, allow_val_change=True)
        loggers.append(logger)
    elif name == "mlflow":
        tags = {"job_id": job_id, "phase": phase_key, "meaning": json.dumps(meaning, sort_keys=True, default=str)[:5000]}
        loggers.append(MLFlowLogger(experiment_name="lpft-bench", run_name=run_name, tags=tags))
    return loggers
