"""The main job end to end on a tiny synthetic GazeFollow dataset: train, checkpoint, SIGKILL, resume, evaluate.

A run killed after its first checkpoint and resumed must end with weights bitwise equal to an uninterrupted run, and
`--eval_weights` on the final checkpoint must reproduce the metrics the training run reported.
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

from datasets.synthetic import generate_gazefollow
from engine.checkpoint import load_checkpoint
from tests.conftest import ROOT

TINY = [
    "--device", "cpu", "--no_wandb", "--num_workers", "0", "--seed", "3",
    "--input_size", "64", "--output_size", "32", "--batch_size", "4",
    "--list_resnet_scene_layers", "1", "1", "1", "1", "1", "--list_resnet_face_layers", "1", "1", "1", "1", "1",
    "--resnet_scene_inplanes", "8", "--resnet_face_inplanes", "8", "--unet_context_vector", "128",
    "--unet_inplanes", "8", "--list_unet_inplanes_multipliers", "1", "2", "--list_unet_attention_levels", "2",
    "--train_time_steps", "50", "--sample_time_steps", "5", "--print_every", "1",
    "--evaluate_every", "100", "--save_every", "1",
]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("gazefollow_synthetic")
    generate_gazefollow(root, n_train_images=10, n_test_images=3, seed=5)
    return root


def main_command(dataset, output_dir, tag, *extra):
    return [sys.executable, "main.py", *TINY, "--source_dataset_dir", str(dataset), "--output_dir", str(output_dir),
            "--tag", tag, *extra]


def run_main(*args):
    result = subprocess.run(list(args), cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def test_train_kill_resume_evaluate(dataset, tmp_path):
    epochs = ["--epochs", "4"]
    run_main(*main_command(dataset, tmp_path, "straight", *epochs))
    straight = load_checkpoint(tmp_path / "straight" / "last.pt")
    assert straight["epoch"] == 4
    assert (tmp_path / "straight" / "config.yaml").is_file()
    assert {f"ckpt_epoch_{i}.pt" for i in range(1, 5)} <= {p.name for p in (tmp_path / "straight").iterdir()}

    # Kill the same run with SIGKILL as soon as its first checkpoint exists, then resume it.
    process = subprocess.Popen(main_command(dataset, tmp_path, "killed", *epochs), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint = tmp_path / "killed" / "last.pt"
    deadline = time.time() + 300
    while not checkpoint.exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    interrupted = load_checkpoint(checkpoint)
    assert interrupted["epoch"] < 4, "the run finished before it could be killed; the test proves nothing"
    resumed = run_main(*main_command(dataset, tmp_path, "killed", *epochs))
    assert f"resuming {tmp_path / 'killed'} at epoch {interrupted['epoch']}" in resumed.stdout
    final = load_checkpoint(checkpoint)
    assert final["epoch"] == 4 and final["step"] == straight["step"]
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, final["model"][name]), name

    trained_metrics = json.loads((tmp_path / "straight" / "metrics.json").read_text())
    for key in ("auc", "min_l2", "avg_l2", "inout_ap", "min_ang", "avg_ang", "protocol", "dataset", "n_samples",
                "sample_steps"):
        assert key in trained_metrics
    assert trained_metrics["protocol"] == "gazefollow" and trained_metrics["sample_steps"] == 5
    assert 0.0 <= trained_metrics["auc"] <= 1.0

    # Evaluation only, from the final checkpoint: same weights, same seed, same sampling noise -> same numbers.
    run_main(*main_command(dataset, tmp_path, "evaluation", "--eval_weights",
                           str(tmp_path / "straight" / "last.pt")))
    evaluated = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    for key in ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang"):
        assert evaluated[key] == pytest.approx(trained_metrics[key], abs=1e-9), key
    rows = (tmp_path / "evaluation" / "predictions.csv").read_text().splitlines()
    assert len(rows) == evaluated["n_samples"] + 1

    log = [json.loads(line) for line in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    train_records = [r for r in log if r["type"] == "train"]
    assert train_records and {"loss", "lr_unet", "lr_gaze", "images_per_second"} <= set(train_records[0])
    assert [r["step"] for r in train_records] == list(range(1, straight["step"] + 1))


def test_no_save_keeps_only_the_latest_checkpoint(dataset, tmp_path):
    run_main(*main_command(dataset, tmp_path, "nosave", "--epochs", "2", "--no_save"))
    assert sorted(p.name for p in (tmp_path / "nosave").glob("*.pt")) == ["last.pt"]
