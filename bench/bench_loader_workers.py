"""Training data loading over several epochs: loader workers that persist across epochs (the training default) against
workers started afresh every epoch, side by side on the demo configuration and the synthetic dataset (`make data`).
Run `python -m bench.bench_loader_workers` from the project root; it checks both give the same batches."""
from __future__ import annotations

import time

import torch
from torch.utils.data import DataLoader

from datasets import build_dataset
from engine.config import load_config
from engine.data import EpochShuffleSampler, make_loader


def epochs_seconds(loader: DataLoader, sampler: EpochShuffleSampler, epochs: int) -> tuple[float, list[torch.Tensor]]:
    first_batches = []
    started = time.perf_counter()
    for epoch in range(epochs):
        sampler.set_epoch(epoch)
        for i, batch in enumerate(loader):
            if i == 0:
                first_batches.append(batch["image"])
    return time.perf_counter() - started, first_batches


def main(epochs: int = 4) -> None:
    config = load_config(["configs/demo/diffusion.yaml", "configs/demo/gaze.yaml"], {})
    train_set = build_dataset(config, "train")
    sampler = EpochShuffleSampler(len(train_set), seed=config.seed)
    persistent = make_loader(train_set, config, train=True, sampler=sampler)
    assert persistent.persistent_workers
    restarted = DataLoader(train_set, batch_size=config.batch_size, sampler=sampler, drop_last=True,
                           num_workers=config.num_workers, persistent_workers=False)
    epochs_seconds(restarted, sampler, 1)  # warm the file cache so neither side pays for the first reads
    restarted_s, persistent_s = 0.0, 0.0
    for _ in range(2):  # interleaved, so a drift in machine load hits both sides
        seconds, restarted_batches = epochs_seconds(restarted, sampler, epochs)
        restarted_s += seconds
        seconds, persistent_batches = epochs_seconds(persistent, sampler, epochs)
        persistent_s += seconds
    assert all(torch.equal(a, b) for a, b in zip(restarted_batches, persistent_batches))
    print(f"2 x {epochs} epochs of {len(persistent)} batches, {config.num_workers} workers: restarted each epoch "
          f"{restarted_s:.1f} s, persistent {persistent_s:.1f} s (the first start-up included), "
          f"ratio {restarted_s / persistent_s:.2f}; per epoch saved {(restarted_s - persistent_s) / (2 * epochs):.2f} s")


if __name__ == "__main__":
    main()
