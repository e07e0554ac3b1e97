"""The bench's measuring instruments: a step clock and a forward-pass counter that time and count both sides
of a comparison the same way, and the thread limits every measurement runs under."""
from __future__ import annotations

import os
import statistics
import time
from contextlib import contextmanager
from typing import Iterator

import torch
from threadpoolctl import threadpool_limits
from torch.optim.optimizer import register_optimizer_step_post_hook
from torch.utils.data import DataLoader, Dataset


def conditions() -> str:
    """How a measurement ran, and what else this machine was doing meanwhile (timings move with it)."""
    return (f"torch threads {torch.get_num_threads()}, machine load average {os.getloadavg()[0]:.1f} over the last "
            f"minute on {os.cpu_count()} cores")



class StepClock:
    """When each optimiser step ends and how many images it trained on.

    Both sides of a comparison are timed by this one instrument: the batch size is read as the model's
    training forward starts, the time taken as any optimiser's step returns (Lightning runs the forward and
    backward inside `optimizer.step`, a plain loop before it: either way the step ends at the update).
    """

    def __init__(self, model: torch.nn.Module):
        self.model = model
        self.sizes: list[int] = []
        self.ends: list[float] = []

    def __enter__(self) -> "StepClock":
        self._handles = [self.model.register_forward_pre_hook(self._batch_starts),
                         register_optimizer_step_post_hook(self._step_ends)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()

    def _batch_starts(self, module: torch.nn.Module, args: tuple) -> None:
        if module.training and torch.is_grad_enabled():  # evaluation forwards are no training steps
            self.sizes.append(len(args[0]))

    def _step_ends(self, optimizer, args, kwargs) -> None:
        self.ends.append(time.perf_counter())

    def rates(self, steps_per_epoch: int) -> tuple[float, float]:
        """(images/s of the median step inside an epoch, sustained images/s), the first epoch left out.

        A step inside an epoch lasts from the previous step's end to its own, so the loop's work between steps
        (fetching the batch, hooks, logging) is part of it; the median keeps a step that another process
        stalled from speaking for the rest. The sustained rate is images over time from the end of the first
        epoch to the last step: epoch ends and stalls included."""
        if len(self.sizes) != len(self.ends) or steps_per_epoch < 2 or len(self.ends) < 2 * steps_per_epoch:
            raise ValueError(f"need at least two epochs of at least two steps each; clocked {len(self.ends)} steps "
                             f"ending and {len(self.sizes)} starting, {steps_per_epoch} per epoch")
        inside = [i for i in range(steps_per_epoch, len(self.ends)) if i % steps_per_epoch]
        step_rate = statistics.median(self.sizes[i] / (self.ends[i] - self.ends[i - 1]) for i in inside)
        sustained = sum(self.sizes[steps_per_epoch:]) / (self.ends[-1] - self.ends[steps_per_epoch - 1])
        return step_rate, sustained


class ForwardCounter:
    """Images through `backbone`, whoever calls it (training, validation, diagnostics, feature extraction)."""

    def __init__(self, backbone: torch.nn.Module):
        self.backbone = backbone
        self.images = 0

    def __enter__(self) -> "ForwardCounter":
        self._handle = self.backbone.register_forward_pre_hook(self._count)
        return self

    def __exit__(self, *exc) -> None:
        self._handle.remove()

    def _count(self, module: torch.nn.Module, args: tuple) -> None:
        self.images += len(args[0])


@contextmanager
def threads(count: int) -> Iterator[None]:
    """torch's intra-op threads and every BLAS and OpenMP pool at `count`, restored after."""
    previous = torch.get_num_threads()
    with threadpool_limits(limits=count):
        torch.set_num_threads(count)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def tensors(dataset: Dataset) -> tuple[torch.Tensor, torch.Tensor]:
    return next(iter(DataLoader(dataset, batch_size=len(dataset))))

