"""Behaviour of phases, supplied as Lightning callbacks."""
from __future__ import annotations

from typing import Callable

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import nn


class BatchNormEval(Callback):
    """Keeps BatchNorm layers in eval mode while the rest trains: running statistics stay as they were.

    Lightning puts the module in train mode at the start of every training epoch, so this runs after it.
    """

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        for module in pl_module.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()


class FrozenBackboneEval(Callback):
    """A frozen backbone runs in eval mode (no BatchNorm statistics drift, no dropout) while the head trains."""

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.model.backbone.eval()


class EpochRecorder(Callback):
    """Collects every epoch's logged metrics into a list of plain dicts (the job record's history)."""

    def __init__(self, on_epoch: Callable[[dict], None] | None = None):
        self.epochs: list[dict] = []
        self.on_epoch = on_epoch

    # Lightning validates inside the training epoch; by its end both train and eval metrics are reduced.
    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        row = {"epoch": trainer.current_epoch}
        for name, value in trainer.callback_metrics.items():
            row[name] = float(value.item() if isinstance(value, torch.Tensor) else value)
        self.epochs.append(row)
        if self.on_epoch is not None:
            self.on_epoch(row)
