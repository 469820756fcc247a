"""One machine, one seed: two training runs in separate processes write bitwise equal checkpoints (with the data
loaded in the main process, and with 2 loader workers in both runs); and the multi-seed demo script
(`python -m bench.demo_seeds`) runs one configuration per seed and reports each metric's mean and spread."""
import math
import subprocess
import sys

import pytest
import torch

from bench.demo_seeds import main as demo_seeds, markdown_table, spread
from engine.checkpoint import load_checkpoint
from tests.conftest import ROOT
from tests.test_end_to_end import TINY
from tests.tiny_runs import make_tiny_dataset


def tiny_flags(dataset, workers: int) -> list[str]:
    flags = [flag for flag in TINY]
    flags[flags.index("--num_workers") + 1] = str(workers)
    return [*flags, "--source_dataset_dir", str(dataset), "--epochs", "2", "--sample_time_steps", "2"]


def assert_bitwise_equal(a, b, where: str) -> None:
    if isinstance(a, torch.Tensor):
        assert isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b), where
    elif isinstance(a, dict):
        assert a.keys() == b.keys(), where
        for key in a:
            assert_bitwise_equal(a[key], b[key], f"{where}.{key}")
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b)):
            assert_bitwise_equal(x, y, f"{where}[{i}]")
    else:
        assert a == b, f"{where}: {a!r} != {b!r}"


@pytest.mark.parametrize("workers", [0, 2])
def test_same_seed_runs_in_two_processes_write_bitwise_equal_checkpoints(workers, tmp_path):
    dataset = make_tiny_dataset(tmp_path / "data", n_train_images=6)
    states = []
    for run in ("first", "second"):
        command = [sys.executable, "main.py", *tiny_flags(dataset, workers), "--output_dir", str(tmp_path / run),
                   "--tag", "same_seed"]
        result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
        states.append(load_checkpoint(tmp_path / run / "same_seed" / "last.pt"))
    first, second = states
    assert first["step"] == second["step"] > 0
    for key in first:
        if key == "config":  # the two runs differ in their output folder only
            assert {k: v for k, v in first[key].items() if k != "output_dir"} == \
                   {k: v for k, v in second[key].items() if k != "output_dir"}
        else:
            assert_bitwise_equal(first[key], second[key], key)
    if workers:
        return
    # The test can fail: another seed gives other weights.
    other = tmp_path / "other"
    command = [sys.executable, "main.py", *tiny_flags(dataset, workers), "--output_dir", str(other), "--tag",
               "same_seed", "--seed", "4", "--epochs", "1"]
    assert subprocess.run(command, cwd=ROOT, capture_output=True, timeout=900).returncode == 0
    reseeded = load_checkpoint(other / "same_seed" / "ckpt_epoch_1.pt")["model"]
    at_one = load_checkpoint(tmp_path / "first" / "same_seed" / "ckpt_epoch_1.pt")["model"]
    assert any(not torch.equal(reseeded[key], at_one[key]) for key in at_one if at_one[key].is_floating_point())


def test_spread_and_table_of_hand_made_runs():
    assert spread([1.0]) == (1.0, 0.0)
    mean, std = spread([0.9, 1.0, 1.1])
    assert mean == pytest.approx(1.0) and std == pytest.approx(0.1)
    prior = {"auc": 0.47, "min_l2": 0.37, "avg_l2": 0.39, "min_ang": 70.3, "avg_ang": 75.4, "heatmap_ap": 0.003}
    runs = {seed: {"auc": auc, "min_l2": 0.1, "avg_l2": 0.12, "min_ang": 5.0, "avg_ang": 9.0, "heatmap_ap": 0.2,
                   "baseline_centre_prior": prior, "n_samples": 214, "sampler": "ddim", "sample_steps": 1,
                   "sample_k": 4, "protocol": "gazefollow"} for seed, auc in ((0, 0.96), (1, 0.95), (2, 0.94))}
    table = markdown_table(runs)
    assert "3 seeds (0, 1, 2)" in table
    assert "| auc | 0.950 +- 0.010 | 0.940 .. 0.960 | 0.470 |" in table
    assert "| min_ang (deg) | 5.0 +- 0.0 | 5.0 .. 5.0 | 70.300 |" in table


def test_demo_seeds_runs_each_seed_into_its_own_tag_and_prints_mean_and_spread(tmp_path, capsys):
    dataset = make_tiny_dataset(tmp_path / "data")
    files = tmp_path / "tiny.yaml"
    files.write_text("Run:\n  device: cpu\n")
    flags = tiny_flags(dataset, 0)
    del flags[flags.index("--seed"):flags.index("--seed") + 2]  # the script gives each run its seed
    flags[flags.index("--epochs") + 1] = "1"
    argv = ["--seeds", "0", "1", "--yaml_diffusion", str(files), "--yaml_gaze", str(files), "--tag_prefix", "tiny",
            "--output_dir", str(tmp_path / "out"), "--", *flags]
    table = demo_seeds(argv)
    for seed in (0, 1):
        assert (tmp_path / "out" / f"tiny_{seed}" / "metrics.json").is_file()
        assert load_checkpoint(tmp_path / "out" / f"tiny_{seed}" / "last.pt")["config"]["seed"] == seed
    assert "2 seeds (0, 1)" in table and "| auc |" in table and "+-" in table
    rows = [line for line in table.splitlines() if line.startswith("| auc |")]
    low, high = (float(x) for x in rows[0].split("|")[3].split(".."))
    assert low <= high and not math.isnan(low)
    assert table in capsys.readouterr().out
