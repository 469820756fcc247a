"""Data loading for the training engine: an epoch-seeded shuffling sampler (sharded across processes for DDP),
DataLoader construction, and the per-sample randomness of a training step.

Everything random about a training sample is a pure function of the seed and where the sample is: the order of epoch e
depends only on (seed, e); each dataset draws its augmentations from (seed, epoch, index); the diffusion time step and
noise of a sample come from (seed, step, index) (`diffusion_draws`). A run resumed at any step -- also in the middle of
an epoch, with the sampler's `start` -- therefore sees exactly the batches and draws an uninterrupted run would, and
N processes with batch B see the same samples and draws as one process with batch N * B.
"""
from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import DataLoader, Sampler

from engine.stopping import ignore_stop_signals


class EpochShuffleSampler(Sampler[int]):
    """A random permutation of range(n) that is a pure function of (seed, epoch); call `set_epoch` every epoch.

    With `world_size` W > 1 it plays DistributedSampler's part without padding: the permutation is cut to a multiple
    of W (at most W - 1 samples of an epoch are left out, a different few each epoch) and rank r takes positions
    r, r + W, r + 2W, ... So every sample is used at most once per epoch over all ranks, and batch k of B on every rank
    together holds exactly the samples of batch k of W * B in a single-process run with the same seed.

    Indices are yielded as (epoch, index) pairs, which the datasets accept: a persistent loader worker, whose copy of
    the dataset never sees `dataset.set_epoch`, still draws the augmentations of the right epoch.
    """

    def __init__(self, n: int, seed: int = 0, rank: int = 0, world_size: int = 1):
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size = {world_size})")
        self.n, self.seed, self.rank, self.world_size = n, seed, rank, world_size
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Select epoch `epoch`; `start` > 0 skips the first `start` indices of this rank's share (resuming)."""
        self.epoch, self.start = epoch, start

    def share(self) -> list[int]:
        """This rank's indices of the current epoch, in order, from the beginning of the epoch."""
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        order = torch.randperm(self.n, generator=generator)
        usable = self.n - self.n % self.world_size
        return order[:usable][self.rank::self.world_size].tolist()

    def __iter__(self):
        return iter([(self.epoch, index) for index in self.share()[self.start:]])

    def __len__(self) -> int:
        return self.n // self.world_size - self.start


class ShardSampler(Sampler[int]):
    """Evaluation under DDP: rank r takes indices r, r + W, ... of the dataset, so every sample is predicted exactly
    once over all ranks (no padding duplicates, unlike DistributedSampler)."""

    def __init__(self, n: int, rank: int, world_size: int):
        self.indices = list(range(rank, n, world_size))

    def __iter__(self):
        return iter(self.indices)

    def __len__(self) -> int:
        return len(self.indices)


def make_loader(dataset, config, train: bool, sampler: Sampler | None = None) -> DataLoader:
    """Training: `sampler` order, last incomplete batch dropped (BatchNorm needs more than one sample) unless the
    set is smaller than one batch. Evaluation: `sampler` (default: dataset) order, every sample once."""
    batch_size = config.batch_size if train else (config.eval_batch_size or config.batch_size)
    return DataLoader(
        dataset,
        batch_size=batch_size,
        sampler=sampler,
        shuffle=False,
        drop_last=train and len(dataset) > batch_size,
        num_workers=config.num_workers,
        pin_memory=config.device == "cuda",
        # Training workers live for the whole run (no start-up each epoch): the epoch reaches them with every index.
        persistent_workers=train and config.num_workers > 0 and isinstance(sampler, EpochShuffleSampler),
        # The loader draws its workers' base seed from this generator, not from torch's global one, so starting an
        # epoch (or resuming in its middle) leaves the global random state -- saved in checkpoints -- untouched.
        generator=torch.Generator().manual_seed(config.seed),
        worker_init_fn=ignore_stop_signals,  # Ctrl-C / SIGTERM are the main process's to handle (engine.stopping)
    )


def diffusion_draws(indices: torch.Tensor, step: int, seed: int, num_timesteps: int,
                    sample_shape: tuple[int, ...], offset_noise_strength: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """The diffusion time step t [B] (int64) and the noise eps [B, *sample_shape] (float32, on the CPU) of each
    training sample, drawn from a generator seeded by (seed, optimisation step, dataset index) of that sample.
    With `offset_noise_strength` s > 0 the noise is offset noise, eps + s * delta with one delta ~ N(0, 1) per
    channel (as diffusion.gaussian_diffusion.offset_noise_like, here from the sample's own generator)."""
    timesteps, noise = [], []
    for index in indices.tolist():
        state = np.random.SeedSequence([seed, step, int(index)]).generate_state(2, np.uint32)
        generator = torch.Generator().manual_seed(int(state[0]) << 31 | int(state[1]) >> 1)
        timesteps.append(torch.randint(num_timesteps, (), generator=generator))
        eps = torch.randn(sample_shape, generator=generator)
        if offset_noise_strength > 0:
            delta = torch.randn(sample_shape[0], *([1] * (len(sample_shape) - 1)), generator=generator)
            eps = eps + offset_noise_strength * delta
        noise.append(eps)
    if not timesteps:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, *sample_shape)
    return torch.stack(timesteps), torch.stack(noise)
