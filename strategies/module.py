"""The LightningModule that runs one gradient phase of a strategy."""
from __future__ import annotations

from typing import TYPE_CHECKING
from typing import Sequence

import lightning as L
import torch
from torch import nn
from torchmetrics import Metric, SumMetric
from torchmetrics.classification import MulticlassAccuracy

from lpft_bench.datamodules import EvalSet

from .layers import HEAD, grouped_parameters
from .trainability import Trainability

if TYPE_CHECKING:
    from .phases import Phase


def restrict_logits(logits: torch.Tensor, class_subset: Sequence[int] | None) -> torch.Tensor:
    """Logits outside `class_subset` can never win the argmax (ImageNet-R/A's 200 valid classes)."""
    if class_subset is None:
        return logits
    mask = torch.full_like(logits, float("-inf"))
    mask[:, list(class_subset)] = 0.0
    return logits + mask


class BatchMean(Metric):
    """The mean over examples of per-batch means (Lightning's epoch mean of a value logged with `batch_size`),
    summed across processes. torchmetrics' MeanMetric drops the weights when told to keep NaNs, and a diverged
    epoch's loss must stay NaN."""

    def __init__(self):
        super().__init__()
        self.add_state("total", default=torch.tensor(0.0), dist_reduce_fx="sum")
        self.add_state("examples", default=torch.tensor(0.0), dist_reduce_fx="sum")

    def update(self, batch_mean: torch.Tensor, examples: int) -> None:
        self.total = self.total + batch_mean.detach() * examples
        self.examples = self.examples + examples

    def compute(self) -> torch.Tensor:
        return self.total / self.examples


class AdaptationModule(L.LightningModule):
    """Trains what `phase` trains; evaluates the sets it is given after each epoch (one dataloader each)."""

    def __init__(self, model: nn.Module, phase: Phase, trainability: Trainability, eval_sets: Sequence[EvalSet],
                 num_classes: int, pretrained: dict[str, torch.Tensor] | None = None):
        """`trainability`: the phase kind's policy (what gets gradients); `pretrained`: the backbone's
        parameters before any phase, the anchor of an L2-SP penalty."""
        super().__init__()
        self.model = model
        self.phase = phase
        if (phase.l2sp_alpha or phase.l2sp_beta) and pretrained is None:
            raise ValueError(f"phase {phase.name!r} has an L2-SP penalty: pass the pretrained backbone parameters")
        self.anchor = pretrained if phase.l2sp_alpha or phase.l2sp_beta else None
        self.eval_sets = list(eval_sets)
        self.criterion = nn.CrossEntropyLoss(label_smoothing=phase.label_smoothing)
        self.train_accuracy = MulticlassAccuracy(num_classes, average="micro")
        self.train_loss, self.train_penalty = BatchMean(), BatchMean()
        self.eval_accuracy = nn.ModuleList(MulticlassAccuracy(num_classes, average="micro") for _ in self.eval_sets)
        # How many examples each accuracy is over, summed across processes: proves no example is padded or lost.
        self.eval_count = nn.ModuleList(SumMetric() for _ in self.eval_sets)
        trainability.apply_requires_grad(model, phase)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)

    def on_fit_start(self) -> None:
        if self.anchor is not None:
            self.anchor = {name: value.to(self.device) for name, value in self.anchor.items()}

    def l2sp_penalty(self) -> torch.Tensor:
        """(α/2)‖w − w0‖² over the trained backbone parameters + (β/2)‖head‖² (Li et al. 2018)."""
        penalty = torch.zeros((), device=self.device)
        for name, p in self.model.backbone.named_parameters():
            if p.requires_grad:
                penalty = penalty + 0.5 * self.phase.l2sp_alpha * (p - self.anchor[name]).pow(2).sum()
        for p in self.model.head.parameters():
            penalty = penalty + 0.5 * self.phase.l2sp_beta * p.pow(2).sum()
        return penalty

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits = self.model(x)
        loss = self.criterion(logits, y)
        # Metric updates each step, logged once an epoch (`on_train_batch_end`).
        self.train_accuracy.update(logits.argmax(-1), y)
        # train/loss stays the task loss, comparable across strategies; a penalty is logged on its own.
        self.train_loss.update(loss, len(y))
        if self.anchor is not None:
            penalty = self.l2sp_penalty()
            self.train_penalty.update(penalty, len(y))
            loss = loss + penalty
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        """Log the epoch's training metrics once (Lightning's `self.log` costs about a millisecond of Python, a
        tenth of a small model's CPU step): after its last batch, or the batch a callback stopped the fit at
        (a diverged loss: callbacks' hooks run before the module's)."""
        if not (self.trainer.is_last_batch or self.trainer.should_stop):
            return
        self.log("train/loss", self.train_loss, on_step=False, on_epoch=True)
        self.log("train/acc", self.train_accuracy, on_step=False, on_epoch=True)
        if self.anchor is not None:
            self.log("train/l2sp", self.train_penalty, on_step=False, on_epoch=True)

    def validation_step(self, batch, batch_idx, dataloader_idx: int = 0):
        x, y = batch
        eval_set = self.eval_sets[dataloader_idx]
        preds = restrict_logits(self.model(x), eval_set.class_subset).argmax(-1)
        metric = self.eval_accuracy[dataloader_idx]
        metric.update(preds, y)
        self.log(f"acc/{eval_set.name}", metric, on_step=False, on_epoch=True, add_dataloader_idx=False)
        count = self.eval_count[dataloader_idx]
        count.update(torch.tensor(float(len(y)), device=y.device))
        self.log(f"n/{eval_set.name}", count, on_step=False, on_epoch=True, add_dataloader_idx=False)

    def parameter_groups(self) -> list:
        """The trained parameters; with layer-wise rates, one group per layer group (named, e.g. "layer3")
        at lr × lr_decay^(depth from the top) × (backbone_lr_ratio below the head)."""
        phase = self.phase
        if phase.lr_decay == 1 and phase.backbone_lr_ratio == 1:
            return [p for p in self.model.parameters() if p.requires_grad]
        groups = []
        for depth, (name, named) in enumerate(reversed(grouped_parameters(self.model).items())):
            params = [p for _, p in named if p.requires_grad]
            if params:
                ratio = 1.0 if name == HEAD else phase.backbone_lr_ratio
                groups.append({"name": name, "params": params, "lr": phase.lr * phase.lr_decay**depth * ratio})
        return groups

    def configure_optimizers(self):
        params = self.parameter_groups()
        if self.phase.optimizer == "sgd":
            optimiser = torch.optim.SGD(params, lr=self.phase.lr, momentum=self.phase.momentum,
                                        weight_decay=self.phase.weight_decay)
        elif self.phase.optimizer == "adamw":
            optimiser = torch.optim.AdamW(params, lr=self.phase.lr, weight_decay=self.phase.weight_decay)
        else:
            raise ValueError(f"unknown optimizer {self.phase.optimizer!r}; expected 'sgd' or 'adamw'")
        if self.phase.schedule == "constant":
            return optimiser
        # Cosine decay stepped once per epoch, no warm-up (the paper's schedule).
        schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=max(self.phase.epochs, 1))
        return {"optimizer": optimiser, "lr_scheduler": {"scheduler": schedule, "interval": "epoch"}}
