"""Data loading for the training engine: an epoch-seeded shuffling sampler and DataLoader construction.

The order of epoch e depends only on (seed, e), and each dataset draws its augmentations from (seed, epoch, index),
so a run resumed at an epoch boundary sees exactly the batches an uninterrupted run would.
"""
from __future__ import annotations

import torch
from torch.utils.data import DataLoader, Sampler


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of range(n) that is a pure function of (seed, epoch); call `set_epoch` every epoch."""

    def __init__(self, n: int, seed: int = 0):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        return iter(torch.randperm(self.n, generator=generator).tolist())

    def __len__(self) -> int:
        return self.n


def make_loader(dataset, config, train: bool, sampler: Sampler | None = None) -> DataLoader:
    """Training: `sampler` order, last incomplete batch dropped (BatchNorm needs more than one sample) unless the
    set is smaller than one batch. Evaluation: dataset order, every sample once."""
    batch_size = config.batch_size if train else (config.eval_batch_size or config.batch_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=train and len(dataset) > batch_size,
        num_workers=config.num_workers,
        pin_memory=config.device == "cuda",
        persistent_workers=False,  # workers are re-created each epoch so they see the dataset's current epoch
    )
