"""The training data order: each epoch's order depends on (seed, epoch) only, and a resumed
epoch can start where the stopped run was."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """A DistributedSampler whose epoch can start ``skip`` samples in: a run resumed inside an
    epoch takes the batches the stopped run had not reached, not the epoch's first ones again."""

    skip = 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        return itertools.islice(super().__iter__(), self.skip, None)

    def __len__(self) -> int:
        return self.num_samples - self.skip
