"""Image sets as the loaders see them: decoded images made tensors by a transform, cached where they fit, and
gathered a batch at a time."""
from __future__ import annotations

from typing import Callable

import torch
from torch.utils.data import Dataset, default_collate

from .base import StackedBatch
from .transforms import split_for_batches


class TransformedImages(Dataset):
    """(image tensor, label) pairs: `images` yields PIL images, `transform` makes the tensors.

    `cache_bytes` > 0 keeps results in memory after their first read while the set's estimated size fits:
    the tensors themselves for a deterministic (evaluation) transform; for a random (training) one, the decoded
    images after the steps before its first random one (the digits' luminance conversion), so that its
    augmentation still differs every epoch. Each loader worker fills its own cache.
    `gather` makes a training batch with the same draws and tensors as item by item, the tensor conversion
    done once for the batch (the datamodule's loaders call it).
    """

    def __init__(self, images: Dataset, transform: Callable, deterministic: bool = True, cache_bytes: int = 0):
        self.images = images
        self.transform = transform
        self.deterministic = deterministic
        self.cache_bytes = cache_bytes
        self._cache: dict[int, tuple] | None = None
        self._cache_decided = not cache_bytes
        self._before_draws, self._draws, self._tail = split_for_batches(transform)

    @property
    def targets(self) -> list[int]:
        return self.images.targets

    def __len__(self) -> int:
        return len(self.images)

    def _remember(self, index: int, kept: tuple) -> None:
        if not self._cache_decided:  # the first item read decides, by its size, for the whole set
            sample = kept[0]
            size = sample.element_size() * sample.nelement() if isinstance(sample, torch.Tensor) else len(sample.tobytes())
            self._cache_decided = True
            self._cache = {} if size * len(self) <= self.cache_bytes else None
        if self._cache is not None:
            self._cache[index] = kept

    def _kept(self, index: int) -> tuple:
        """What the cache keeps of an item, from the cache or read and remembered: a deterministic transform's
        result, or a random transform's image before its first random step; and the label."""
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        image, label = self.images[index]
        kept = ((self.transform if self.deterministic else self._before_draws)(image), label)
        self._remember(index, kept)
        return kept

    def _from_kept(self, image):
        """The rest of a random transform, from its first random step."""
        image = self._draws(image)
        return image if self._tail is None else self._tail[1](self._tail[0](image))

    def __getitem__(self, index: int):
        kept = self._kept(index)
        return kept if self.deterministic else (self._from_kept(kept[0]), kept[1])

    def gather(self, indices: list[int]) -> StackedBatch:
        """The batch default_collate makes of these items, the same tensors bit for bit and the same draws from
        torch's generator in the same order; a random transform's pictures become one tensor at once."""
        if self.deterministic or self._tail is None:
            return StackedBatch(default_collate([self[i] for i in indices]))
        prepared = [self._kept(i) for i in indices]
        pictures = [self._draws(image) for image, _ in prepared]
        to_tensor, normalize = self._tail
        stacked = to_tensor.stack(pictures)
        images = (torch.stack([normalize(to_tensor(p)) for p in pictures]) if stacked is None
                  else normalize.batch_in_place(stacked))
        return StackedBatch([images, torch.tensor([label for _, label in prepared])])
