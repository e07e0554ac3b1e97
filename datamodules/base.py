"""The contract every shift benchmark fulfils: one training set, many evaluation sets, one run."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Sequence

import lightning as L
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler

ID_VAL = "id_val"
ID_TEST = "id_test"


@dataclass(frozen=True)
class EvalSet:
    """A named evaluation set; `split` is "id" or "ood".

    `class_subset` restricts the argmax to these logits (ImageNet-R/A evaluate 200 of 1000 classes).
    """

    name: str
    dataset: Dataset
    split: str
    class_subset: tuple[int, ...] | None = None


@dataclass
class ShiftSplits:
    """What a benchmark builds. `train_eval` is the training data with the evaluation transform:
    linear probes and feature metrics read it, so they never see a random augmentation."""

    train: Dataset
    train_eval: Dataset
    eval_sets: Sequence[EvalSet]
    num_classes: int
    class_names: Sequence[str] = field(default_factory=list)


class ShiftDataModule(L.LightningDataModule):
    """Base class of the benchmarks.

    Subclasses implement `build_splits`. Every evaluation set runs in the same validation loop
    (one dataloader each), so one training serves the ID and all OOD evaluations. Under DDP the
    evaluation loaders shard without padding, so each image is counted exactly once.
    """

    name: str = "?"

    def __init__(
        self,
        data_config: dict | None = None,
        data_root: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
    ):
        super().__init__()
        # timm's data config of the backbone (input_size, mean, std, interpolation, crop_pct).
        self.data_config = dict(data_config or {})
        self.data_root = data_root
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self._splits: ShiftSplits | None = None

    def build_splits(self) -> ShiftSplits:
        raise NotImplementedError

    @property
    def splits(self) -> ShiftSplits:
        if self._splits is None:
            self._splits = self.build_splits()
        return self._splits

    def setup(self, stage: str | None = None) -> None:
        self.splits  # noqa: B018 - builds once, fails early with the benchmark's own message

    @property
    def num_classes(self) -> int:
        return self.splits.num_classes

    @property
    def eval_sets(self) -> list[EvalSet]:
        return list(self.splits.eval_sets)

    @property
    def selection_set(self) -> str:
        """The evaluation set that selects epochs and hyperparameters."""
        names = [s.name for s in self.eval_sets]
        return ID_VAL if ID_VAL in names else ID_TEST

    def _world(self) -> tuple[int, int]:
        trainer = getattr(self, "trainer", None)
        if trainer is None:
            return 1, 0
        return trainer.world_size, trainer.global_rank

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool) -> DataLoader:
        world_size, rank = self._world()
        sampler = None
        if world_size > 1:
            if shuffle:
                sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.seed)
            else:
                sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        return DataLoader(
            dataset,
            batch_size=batch_size,
            shuffle=shuffle and sampler is None,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            generator=torch.Generator().manual_seed(self.seed) if shuffle and sampler is None else None,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.splits.train, self.batch_size, shuffle=True)

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(s.dataset, self.eval_batch_size, shuffle=False) for s in self.eval_sets]

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """A plain, unsharded loader (feature extraction, metrics on probe subsets)."""
        return DataLoader(dataset, batch_size=self.eval_batch_size, shuffle=False, num_workers=self.num_workers)
