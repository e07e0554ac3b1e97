"""The contract every shift benchmark fulfils: one training set, many evaluation sets, one run."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import lightning as L
import numpy as np
import torch
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Subset, TensorDataset, default_collate

from lpft_bench.errors import UsageError

ID_VAL = "id_val"
ID_TEST = "id_test"
# The `subset` option draws the same images whatever the job's seed: a subset is a smaller benchmark, not noise.
SUBSET_SEED = 0


class DataError(UsageError):
    """Data a benchmark reads is absent, malformed or unreadable."""


class DatasetMissing(DataError):
    """Data a benchmark needs is absent or malformed.

    Raised while the splits are built, so a run stops before training. Loaders raise it with the path and
    the problem; the benchmark adds which of its sets needed the data, the layout it expects and how to
    obtain it (`within`). All arguments are positional so the error survives pickling (DDP, workers).
    """

    def __init__(self, path, problem: str, benchmark: str | None = None, eval_set: str | None = None,
                 layout: str | None = None, obtain: str | None = None):
        super().__init__(str(path), problem, benchmark, eval_set, layout, obtain)
        self.path, self.problem = str(path), problem
        self.benchmark, self.eval_set, self.layout, self.obtain = benchmark, eval_set, layout, obtain

    def within(self, benchmark: str, eval_set: str, layout: str, obtain: str) -> "DatasetMissing":
        return DatasetMissing(self.path, self.problem, benchmark, eval_set, layout, obtain)

    def __str__(self) -> str:
        where = f"{self.benchmark} / {self.eval_set}: " if self.benchmark else ""
        lines = [f"{where}{self.problem}", f"  expected: {self.path}"]
        if self.layout:
            lines.append(f"  layout:   {self.layout}")
        if self.obtain:
            lines.append(f"  obtain:   {self.obtain}")
        return "\n".join(lines)


class CorruptImage(DataError):
    """An image file that cannot be decoded; the message names the file.

    Takes one message string, so a DataLoader worker re-raises it with its own type.
    """


@dataclass(frozen=True)
class EvalSet:
    """A named evaluation set; `split` is "id" or "ood".

    `class_subset` restricts the argmax to these logits (ImageNet-R/A evaluate 200 of 1000 classes).
    `groups` names each example's source image where one image appears several times (digits at several
    angles): the oracle probe keeps a group on one side of its split. None: every example its own.
    """

    name: str
    dataset: Dataset
    split: str
    class_subset: tuple[int, ...] | None = None
    groups: np.ndarray | None = None


@dataclass
class ShiftSplits:
    """What a benchmark builds. `train_eval` is the training data with the evaluation transform (the same
    images in the same order): linear probes and feature metrics read it, so they never see a random
    augmentation."""

    train: Dataset
    train_eval: Dataset
    eval_sets: Sequence[EvalSet]
    num_classes: int
    class_names: Sequence[str] = field(default_factory=list)


class StackedBatch(list):
    """A batch gathered whole, in the form torch's default collate gives: `collate` passes it on."""


class Gathering(Dataset):
    """A set's items for the datamodule's loaders, gathered a batch at a time (`__getitems__`) by its own
    `gather` (or one index per tensor of a TensorDataset), through any Subsets of it: the batches the default
    collate would make, without a Python call per item for the stacking. Only those loaders see it (their
    `collate` passes the batch on): other loaders' default collate could not read a gathered batch."""

    def __init__(self, gather: Callable[[list[int]], StackedBatch], size: int, positions: np.ndarray | None):
        self.gather, self.size, self.positions = gather, size, positions

    def __len__(self) -> int:
        return self.size

    def __getitems__(self, indices: list[int]) -> StackedBatch:
        return self.gather(indices if self.positions is None else self.positions[indices].tolist())


def gather_tensors(tensors: Sequence[torch.Tensor], indices: list[int]) -> StackedBatch:
    index = torch.as_tensor(indices, dtype=torch.long)
    return StackedBatch(tensor[index] for tensor in tensors)


def gathered(dataset: Dataset) -> Dataset:
    """`dataset` as a Gathering where it (under its Subsets) can gather a batch, else itself."""
    subsets, base = [], dataset
    while isinstance(base, Subset):
        subsets.append(np.asarray(base.indices, dtype=np.int64))
        base = base.dataset
    if isinstance(base, TensorDataset):
        gather = partial(gather_tensors, base.tensors)
    elif callable(getattr(base, "gather", None)):
        gather = base.gather
    else:
        return dataset
    positions = subsets[0] if subsets else None
    for indices in subsets[1:]:  # item k of the outer set is item positions[k] of the next one down
        positions = indices[positions]
    return Gathering(gather, len(dataset), positions)


def collate(samples):
    """torch's default collate, except for a batch gathered whole."""
    return samples if isinstance(samples, StackedBatch) else default_collate(samples)


def dataset_targets(dataset: Dataset) -> np.ndarray:
    """The integer label of every item, read without loading a single image."""
    if isinstance(dataset, Subset):
        return dataset_targets(dataset.dataset)[np.asarray(dataset.indices, dtype=np.int64)]
    if isinstance(dataset, TensorDataset):
        return dataset.tensors[1].numpy()
    return np.asarray(dataset.targets, dtype=np.int64)


def stratified_sample(labels: Sequence[int], size: int, seed: int) -> np.ndarray:
    """`size` indices (sorted) drawn at random within classes, each class in proportion to its share.

    Quotas are rounded by largest remainder (ties to the lower label), so the sample has exactly `size` items.
    """
    labels = np.asarray(labels)
    if size >= len(labels):
        return np.arange(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quota = counts * size / len(labels)
    take = np.floor(quota).astype(np.int64)
    take[np.argsort(-(quota - take), kind="stable")[: size - take.sum()]] += 1
    rng = np.random.default_rng(seed)
    members = np.split(np.argsort(labels, kind="stable"), np.cumsum(counts)[:-1])
    picked = [rng.permutation(indices)[:k] for indices, k in zip(members, take)]
    return np.sort(np.concatenate(picked))


def limit_splits(splits: ShiftSplits, size: int) -> ShiftSplits:
    """At most `size` images of the training set and of every evaluation set, class-stratified.

    `train` and `train_eval` hold the same images in the same order, so one draw serves both.
    """
    keep = stratified_sample(dataset_targets(splits.train), size, SUBSET_SEED)
    eval_sets = []
    for s in splits.eval_sets:
        kept = stratified_sample(dataset_targets(s.dataset), size, SUBSET_SEED)
        eval_sets.append(replace(s, dataset=Subset(s.dataset, kept), groups=None if s.groups is None else s.groups[kept]))
    return replace(splits, train=Subset(splits.train, keep), train_eval=Subset(splits.train_eval, keep),
                   eval_sets=eval_sets)


class ShiftDataModule(L.LightningDataModule):
    """Base class of the benchmarks.

    Subclasses implement `build_splits`. Every evaluation set runs in the same validation loop
    (one dataloader each), so one training serves the ID and all OOD evaluations. Under DDP the
    evaluation loaders shard without padding, so each image is counted exactly once.

    Options every benchmark takes:
    - `mode`: "paper" selects on the ID evaluation set it reports (`id_test`, the paper's protocol);
      "clean" selects on an ID validation set (`id_val`) held out from training. `modes` lists what a
      benchmark offers, the first being its default.
    - `subset=N`: at most N images of the training set and of every evaluation set, class-stratified and
      the same for every seed.
    """

    name: str = "?"
    modes: tuple[str, ...] = ("clean",)
    # Raised when a benchmark's data changes under the same options, so its jobs and caches change identity.
    data_version: int = 0
    # Options that say where the data lives on this machine or how fast it loads: never part of a result.
    machine_options: tuple[str, ...] = ("root", "cache_mb")
    # Options naming files or folders: an experiment file's relative paths are taken from the file.
    path_options: tuple[str, ...] = ("root",)
    # Read from a fixed layout under the data root: the data check lists it, CI's smoke suite runs it on its fake.
    canonical: bool = False
    # Its data comes with an installed package (scikit-learn's digits): never downloaded, faked or subset for
    # smoke runs, and cheap to read whole (its training set size is known before any job).
    ships_data: bool = False
    # A classmethod (root, images_per_class, rng) writing a tiny fake of the data in that layout under the data
    # root `root` (see fakes.py); None where there is none to write.
    write_fake: Callable[[Path, int, np.random.Generator], None] | None = None

    @classmethod
    def identity(cls, options: dict) -> dict:
        """What of the benchmark `options` a job's result depends on: how its data is fingerprinted."""
        meaning = {k: v for k, v in options.items() if k not in cls.machine_options}
        if cls.data_version:  # only when raised: every other benchmark keeps its identity
            meaning["data_version"] = cls.data_version
        return meaning

    @classmethod
    def seeded_sets(cls, options: dict) -> tuple[str, ...]:
        """The sets whose images depend on the job's seed (clean mode carves ID validation from training)."""
        return ("train", ID_VAL)

    def __init__(
        self,
        data_config: dict | None = None,
        data_root: str | None = None,
        batch_size: int = 64,
        eval_batch_size: int = 256,
        num_workers: int = 0,
        seed: int = 0,
        mode: str | None = None,
        subset: int | None = None,
    ):
        super().__init__()
        # timm's data config of the backbone (input_size, mean, std, interpolation, crop_pct).
        self.data_config = dict(data_config or {})
        self.data_root = data_root
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size
        self.num_workers = num_workers
        self.seed = seed
        self.mode = mode or self.modes[0]
        if self.mode not in self.modes:
            raise ValueError(f"{self.name} offers mode {' or '.join(map(repr, self.modes))}, not {mode!r}")
        if subset is not None and (isinstance(subset, bool) or not isinstance(subset, int) or subset < 1):
            raise ValueError(f"subset must be a positive number of images, not {subset!r}")
        self.subset = subset
        self._splits: ShiftSplits | None = None
        # Names of the sets evaluated after every training epoch (None: all); a gradient phase sets it.
        self.epoch_sets: list[str] | None = None

    def build_splits(self) -> ShiftSplits:
        raise NotImplementedError

    @property
    def splits(self) -> ShiftSplits:
        if self._splits is None:
            splits = self.build_splits()
            self._splits = splits if self.subset is None else limit_splits(splits, self.subset)
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
        if shuffle:
            # Also on one process: Lightning calls set_epoch, so epoch k's order depends only on (seed, k)
            # and a phase resumed from a checkpoint sees the same batches as an uninterrupted one.
            sampler = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=self.seed)
        elif world_size > 1:
            sampler = UnrepeatedDistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=False)
        return DataLoader(
            gathered(dataset),
            batch_size=batch_size,
            sampler=sampler,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            pin_memory=torch.cuda.is_available(),
            collate_fn=collate,
            # Its own generator: a loader without one draws its workers' base seed from the global generator on
            # every iteration, so how many sets are evaluated would shift the training augmentations' stream.
            generator=None if shuffle else torch.Generator(),
        )

    def train_dataloader(self) -> DataLoader:
        # batch_size is the global batch (the paper's): under DDP each process takes its share.
        world_size, _ = self._world()
        if self.batch_size % world_size:
            raise ValueError(f"batch_size {self.batch_size} is not divisible by the {world_size} DDP processes")
        return self._loader(self.splits.train, self.batch_size // world_size, shuffle=True)

    @property
    def epoch_eval_sets(self) -> list[EvalSet]:
        """The sets Lightning's validation loop evaluates: those named in `epoch_sets`, or every one."""
        if self.epoch_sets is None:
            return self.eval_sets
        return [s for s in self.eval_sets if s.name in self.epoch_sets]

    def val_dataloader(self) -> list[DataLoader]:
        return [self._loader(s.dataset, self.eval_batch_size, shuffle=False) for s in self.epoch_eval_sets]

    def eval_loader(self, dataset: Dataset) -> DataLoader:
        """A plain, unsharded loader (feature extraction, metrics on probe subsets)."""
        return DataLoader(gathered(dataset), batch_size=self.eval_batch_size, shuffle=False,
                          num_workers=self.num_workers, collate_fn=collate, generator=torch.Generator())
