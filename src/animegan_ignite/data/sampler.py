"""The training data's order: a sampler that a resumed run can start partway into an epoch."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from typing import Any

from torch.utils.data import DistributedSampler


class EpochSampler(DistributedSampler):
    """A DistributedSampler whose epoch can start ``skip`` samples in: a run resumed inside an
    epoch takes the batches the stopped run had not reached, not the epoch's first ones again.
    With ``fresh`` (synthetic.FreshFaces) epoch ``e``'s indices are offset by ``e x len``: new
    items every epoch."""

    skip = 0

    def __init__(self, *args: Any, fresh: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fresh = fresh

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        super().set_epoch(epoch)
        self.skip = skip

    def __iter__(self) -> Iterator[int]:
        indices = itertools.islice(super().__iter__(), self.skip, None)
        if not self.fresh:
            return indices
        offset = self.epoch * len(self.dataset)
        return (i + offset for i in indices)

    def __len__(self) -> int:
        return self.num_samples - self.skip
