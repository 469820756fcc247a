"""DDP on CPU: `torchrun --nproc_per_node=2 main.py` with the gloo backend trains like one process with the doubled
batch, keeps the ranks identical, writes from rank 0 only, and evaluates every test sample exactly once; the sampler
splits every epoch between ranks without duplicates."""
import csv
import json
import os
import subprocess
import sys

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.data import EpochShuffleSampler, ShardSampler
from tests.conftest import ROOT
from tests.test_end_to_end import main_command, run_main
from tests.tiny_runs import make_tiny_dataset


def test_epoch_shards_are_disjoint_and_batches_match_the_single_process_batches():
    n, world, batch = 11, 2, 2
    single = EpochShuffleSampler(n, seed=3)
    shards = [EpochShuffleSampler(n, seed=3, rank=r, world_size=world) for r in range(world)]
    for epoch in (0, 1):
        for sampler in (single, *shards):
            sampler.set_epoch(epoch)
        order, parts = list(single), [list(s) for s in shards]
        assert all(len(part) == len(s) == n // world for part, s in zip(parts, shards))
        assert not set(parts[0]) & set(parts[1])  # each sample at most once per epoch
        assert sorted(parts[0] + parts[1]) == sorted(order[:n - n % world])  # no padding duplicates
        for k in range(len(parts[0]) // batch):  # batch k of all ranks = batch k of one process with world * batch
            together = sorted(parts[0][k * batch:(k + 1) * batch] + parts[1][k * batch:(k + 1) * batch])
            assert together == sorted(order[k * world * batch:(k + 1) * world * batch])
    assert sorted(list(ShardSampler(5, 0, 2)) + list(ShardSampler(5, 1, 2))) == [0, 1, 2, 3, 4]


def test_torchrun_two_processes_gloo_equals_one_process_with_the_global_batch(tmp_path):
    dataset = make_tiny_dataset(tmp_path / "data")
    # Frozen streams keep their BatchNorm layers in eval mode and x_loss off leaves the in/out head (whose BatchNorm
    # would see each rank's half batch) without gradient: then the only trained part, the UNet, sees exactly the
    # same samples, time steps and noise in both runs and the two runs must agree to float round-off.
    flags = ["--epochs", "1", "--freeze_scene", "--freeze_face", "--x_loss", "false", "--lr", "1e-3"]
    single = main_command(dataset, tmp_path, "single", *flags, "--batch_size", "4")
    run_main(*single)
    ddp = main_command(dataset, tmp_path, "ddp", *flags, "--batch_size", "2")
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                             *ddp[1:]], cwd=ROOT, capture_output=True, text=True, timeout=600,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    one, two = load_checkpoint(tmp_path / "single" / "last.pt"), load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert two["world_size"] == 2 and two["step"] == one["step"] == 2  # identical on both ranks: checked per save
    close = []
    for name, tensor in one["model"].items():
        if name.startswith("inout_head.bn") and "running" in name or name.endswith("num_batches_tracked"):
            continue  # rank 0's BatchNorm statistics of its half batch (the in/out head is not trained here)
        # Within a tenth of one Adam step (lr): a different batch, time step or noise moves weights by about lr.
        assert torch.allclose(tensor, two["model"][name], rtol=0, atol=1e-4), name
        close.append(torch.allclose(tensor, two["model"][name], rtol=1e-5, atol=1e-6))
    # Float round-off only: all but a few tensors agree to 1e-6. The few are biases followed by a GroupNorm of one
    # channel per group, whose gradient is mathematically zero; Adam divides their round-off gradients (~1e-10) by
    # eps = 1e-8 and turns them into steps of ~1e-5.
    assert sum(close) >= 0.95 * len(close)
    # The UNet did train (Adam moves each weight by about lr = 1e-3 per step, far above the tolerance).
    assert sum(float(state["exp_avg"].abs().sum()) > 0 for state in one["optimizer"]["state"].values()) > 10

    metrics = json.loads((tmp_path / "ddp" / "metrics.json").read_text())
    with open(tmp_path / "ddp" / "predictions.csv") as stream:
        indices = [int(row["index"]) for row in csv.DictReader(stream)]
    assert metrics["n_samples"] == 5 and indices == [0, 1, 2, 3, 4]  # every test sample exactly once
    log = [json.loads(line) for line in (tmp_path / "ddp" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "train"] == [1, 2]  # rank 0 alone writes the log
    single_log = [json.loads(line) for line in (tmp_path / "single" / "metrics.jsonl").read_text().splitlines()]
    for mine, theirs in zip([r for r in log if r["type"] == "train"], [r for r in single_log if r["type"] == "train"]):
        assert mine["in_frame"] == theirs["in_frame"]  # summed over the ranks
        assert mine["loss_diffusion"] == pytest.approx(theirs["loss_diffusion"], rel=1e-4)  # global-batch mean
