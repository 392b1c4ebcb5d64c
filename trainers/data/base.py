"""What every dataset shares: the errors a data set raises and deterministic flips.

Flips: a random horizontal flip is a deterministic function of ``(seed, epoch, index)``
(:func:`flip_decision`), not of a global RNG, so data augmentation is exactly reproducible on
resume and independent of worker count, sampler or world size. Call ``set_epoch(epoch)`` before
each epoch; with ``DataLoader(persistent_workers=True)`` the workers keep their own copy of the
dataset, so there the epoch must instead be set before the loader is created.
"""
from __future__ import annotations

_MASK64 = (1 << 64) - 1


class DatasetUnavailable(RuntimeError):
    """The data set's files are not on this machine and could not be fetched."""


class CorruptDataError(RuntimeError):
    """A data file exists but its content is not what it should be."""


class CorruptImageError(CorruptDataError):
    """An image file cannot be decoded; the message names the file."""


# --- deterministic flips ------------------------------------------------------------------

def flip_decision(seed: int, epoch: int, index: int) -> bool:
    """Fair, deterministic coin for ``(seed, epoch, index)`` (splitmix64 finaliser)."""
    z = (seed * 0x9E3779B97F4A7C15 + epoch * 0xD1B54A32D192ED03
         + index * 0xBF58476D1CE4E5B9 + 0x632BE59BD9B4E019) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return bool((z ^ (z >> 31)) >> 63)


class EpochFlipMixin:
    """``set_epoch`` plus the per-(seed, epoch, index) flip decision shared by all datasets."""

    random_flip: bool = False
    seed: int = 0
    epoch: int = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def is_flipped(self, index: int) -> bool:
        return bool(self.random_flip) and flip_decision(self.seed, self.epoch, int(index))
