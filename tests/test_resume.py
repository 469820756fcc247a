"""Exact, safe resume: a run killed with SIGKILL in the middle of an epoch, or in the middle of writing a checkpoint,
resumes to weights bitwise equal to an uninterrupted run; a NaN loss stops the run naming the step and keeps the
last good checkpoint; files that need unsafe unpickling are refused unless explicitly trusted."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import torch.nn.functional as F

import main as main_module
from engine.checkpoint import load_checkpoint
from engine.data import EpochShuffleSampler, diffusion_draws
from pretrained.loading import load_init_weights
from tests.conftest import ROOT
from tests.test_end_to_end import main_command, run_main
from tests.tiny_runs import make_tiny_dataset

# 9 training samples, batch 4: 2 steps per epoch, 4 in all; with --save_every_steps 1, last.pt is also written mid-epoch.
FLAGS = ["--epochs", "2", "--save_every_steps", "1", "--ema_on", "--ema_rate", "0.9", "--evaluate_every", "2"]

# Runs main.py with torch.save patched to die (SIGKILL) half-way through writing its N-th checkpoint.
DIE_DURING_SAVE = """
import os, signal, sys, torch
calls, real_save = [0], torch.save
def dying_save(obj, stream, *args, **kwargs):
    calls[0] += 1
    if calls[0] == int(os.environ["DIE_AT_SAVE"]):
        stream.write(b"half a checkpoint" * 1000)
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
    return real_save(obj, stream, *args, **kwargs)
torch.save = dying_save
import main
sys.exit(main.main(sys.argv[1:]))
"""


# Runs main.py and sends it SIGNAL (SIGINT = Ctrl-C, or SIGTERM) as optimisation step SIGNAL_AT_STEP (0-based) starts.
SIGNAL_DURING_STEP = """
import inspect, os, signal, sys
import engine.train
real_step = engine.train.training_step
def signalled_step(*args, **kwargs):
    if inspect.signature(real_step).bind(*args, **kwargs).arguments["step"] == int(os.environ["SIGNAL_AT_STEP"]):
        os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
    return real_step(*args, **kwargs)
engine.train.training_step = signalled_step
import main
sys.exit(main.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return make_tiny_dataset(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def straight(dataset, tmp_path_factory):
    """The final training state of the uninterrupted run every interrupted one must resume to."""
    output = tmp_path_factory.mktemp("straight")
    run_main(*main_command(dataset, output, "straight", *FLAGS))
    state = load_checkpoint(output / "straight" / "last.pt")
    assert state["step"] == 4
    return state


def assert_same_training_state(expected, found):
    assert found["step"] == expected["step"] and found["epoch"] == expected["epoch"]
    for part in ("model", "ema"):
        for name, tensor in expected[part].items():
            assert torch.equal(tensor, found[part][name]), f"{part}: {name}"
    assert torch.equal(expected["rng"]["torch"], found["rng"]["torch"])
    assert found["optimizer"]["state"].keys() == expected["optimizer"]["state"].keys()
    for index, values in expected["optimizer"]["state"].items():
        assert torch.equal(values["exp_avg_sq"], found["optimizer"]["state"][index]["exp_avg_sq"])


def test_sigkill_mid_epoch_and_during_a_checkpoint_write_resume_bitwise(dataset, straight, tmp_path):
    # 1. SIGKILL as soon as a mid-epoch checkpoint exists (batch 1 of an epoch done), then resume.
    process = subprocess.Popen(main_command(dataset, tmp_path, "killed", *FLAGS), cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    checkpoint, deadline = tmp_path / "killed" / "last.pt", time.time() + 300
    while process.poll() is None and time.time() < deadline:
        if checkpoint.exists() and load_checkpoint(checkpoint)["batch_in_epoch"] == 1:
            break
        time.sleep(0.02)
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    interrupted = load_checkpoint(checkpoint)
    assert interrupted["step"] < 4, "the run finished before it could be killed; the test proves nothing"
    resumed = run_main(*main_command(dataset, tmp_path, "killed", *FLAGS))
    if interrupted["batch_in_epoch"]:
        assert f"(batch {interrupted['batch_in_epoch']} of the epoch)" in resumed.stdout
    assert_same_training_state(straight, load_checkpoint(checkpoint))
    log = [json.loads(line) for line in (tmp_path / "killed" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "train"] == [1, 2, 3, 4]  # each step once after the resume

    # 2. SIGKILL half-way through the 4th checkpoint write (last.pt at step 3, mid-epoch; the 3rd was ckpt_epoch_1.pt): the file of step 2 stays loadable.
    command = main_command(dataset, tmp_path, "torn", *FLAGS)
    died = subprocess.run([sys.executable, "-c", DIE_DURING_SAVE, *command[2:]], cwd=ROOT, capture_output=True,
                          env={**os.environ, "DIE_AT_SAVE": "4"}, timeout=600)
    assert died.returncode == -signal.SIGKILL
    folder = tmp_path / "torn"
    assert [p.name for p in folder.glob(".last.pt.*.tmp")], "the torn temporary file should be there"
    previous = load_checkpoint(folder / "last.pt")
    assert previous["step"] == 2 and previous["batch_in_epoch"] == 0
    run_main(*command)
    assert_same_training_state(straight, load_checkpoint(folder / "last.pt"))
    assert not list(folder.glob(".last.pt.*.tmp"))  # the next write removed the torn temporary file


@pytest.mark.parametrize("name,at_step,status", [("SIGINT", 2, 130), ("SIGTERM", 1, 143)],
                         ids=["ctrl-c-mid-epoch", "sigterm-last-step-of-an-epoch"])
def test_ctrl_c_and_sigterm_finish_the_step_write_a_checkpoint_and_resume_bitwise(dataset, straight, tmp_path, name,
                                                                                  at_step, status):
    flags = [flag for flag in FLAGS if flag not in ("--save_every_steps", "1")]  # the stop itself must checkpoint
    command = main_command(dataset, tmp_path, "stopped", *flags)
    stopped = subprocess.run([sys.executable, "-c", SIGNAL_DURING_STEP, *command[2:]], cwd=ROOT, capture_output=True,
                             text=True, env={**os.environ, "SIGNAL": name, "SIGNAL_AT_STEP": str(at_step)},
                             timeout=600)
    assert stopped.returncode == status, stopped.stderr[-3000:]
    checkpoint = tmp_path / "stopped" / "last.pt"
    assert f"{name} received: finishing the current step and writing a checkpoint" in stopped.stderr
    assert f"stopped by {name} after step {at_step + 1}: wrote {checkpoint}; run the same command again to resume" \
        in stopped.stderr
    assert "Traceback" not in stopped.stderr and not (tmp_path / "stopped" / "run.lock").exists()
    interrupted = load_checkpoint(checkpoint)
    assert interrupted["step"] == at_step + 1  # the step under way when the signal came was finished and saved
    run_main(*command)
    assert_same_training_state(straight, load_checkpoint(checkpoint))


def test_nan_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(dataset, tmp_path, monkeypatch, capsys,
                                                                            single_thread):
    import engine.train

    def poisoned(indices, step, *args):
        t, noise = diffusion_draws(indices, step, *args)
        return t, noise * (float("nan") if step == 2 else 1.0)

    monkeypatch.setattr(engine.train, "diffusion_draws", poisoned)
    code = main_module.main(main_command(dataset, tmp_path, "nan", *FLAGS)[2:])
    assert code == 1
    assert "the loss is nan at step 3" in capsys.readouterr().err
    kept = load_checkpoint(tmp_path / "nan" / "last.pt")
    assert kept["step"] == 2 and all(torch.isfinite(v).all() for v in kept["model"].values() if v.is_floating_point())


def test_sampler_resumes_mid_epoch_and_draws_depend_only_on_seed_step_index():
    sampler = EpochShuffleSampler(10, seed=4)
    sampler.set_epoch(3)
    full = list(sampler)
    sampler.set_epoch(3, start=4)
    assert list(sampler) == full[4:] and len(sampler) == 6
    sampler.set_epoch(4)
    assert list(sampler) != full and sorted(index for _, index in sampler) == list(range(10))
    assert {epoch for epoch, _ in sampler} == {4}  # the epoch travels with each index (persistent loader workers)
    t, noise = diffusion_draws(torch.tensor([5, 2]), step=7, seed=1, num_timesteps=50, sample_shape=(1, 4, 4))
    t2, noise2 = diffusion_draws(torch.tensor([2]), step=7, seed=1, num_timesteps=50, sample_shape=(1, 4, 4))
    assert t[1] == t2[0] and torch.equal(noise[1], noise2[0])  # independent of the batch it is in
    t3, noise3 = diffusion_draws(torch.tensor([2]), step=8, seed=1, num_timesteps=50, sample_shape=(1, 4, 4))
    assert not torch.equal(noise3[0], noise2[0])


def test_unsafe_legacy_checkpoint_refused_unless_trusted(tmp_path):
    model = torch.nn.Module()
    model.unet, model.gaze_backbone = torch.nn.Linear(2, 2), torch.nn.Module()
    model.gaze_backbone.attn = torch.nn.Linear(2, 1)
    weights = {"gaze_model.attn.weight": torch.ones(1, 2), "gaze_model.attn.bias": torch.ones(1),
               "model.weight": torch.ones(2, 2), "model.bias": torch.ones(2)}
    averaged = {key: value * 0.5 for key, value in weights.items()}
    path = tmp_path / "legacy.pt"
    # The original DiffusionGaze layout: it pickles the loss function itself next to `model` and `ema_params`.
    torch.save({"run_id": "x", "epoch": 3, "model": weights, "mse_loss": F.mse_loss, "ema_params": averaged}, path)
    with pytest.raises(RuntimeError, match=r"refused.*mse_loss.*--trust_legacy_checkpoint"):
        load_init_weights(model, path)
    report = load_init_weights(model, path, trust_legacy=True)
    assert report.scheme == "diffusiongaze" and len(report.loaded) == 4 and torch.equal(model.unet.bias, torch.ones(2))
    load_init_weights(model, path, trust_legacy=True, ema=True)  # --eval_weights with --ema_on: ema_params
    assert torch.equal(model.unet.bias, torch.full((2,), 0.5))
    (tmp_path / "torn.pt").write_bytes(path.read_bytes()[:200])
    with pytest.raises(RuntimeError, match="corrupt"):
        load_checkpoint(tmp_path / "torn.pt")


def test_persistent_loader_workers_draw_each_epochs_augmentations(tmp_path):
    """Training workers live for the whole run; the (epoch, index) pairs of the sampler carry the epoch to them, so
    a worker's batches equal the in-process batches of the same epoch although its dataset copy never sees set_epoch."""
    from datasets import build_dataset
    from engine.data import make_loader
    from tests.tiny_runs import make_tiny_dataset, tiny_config

    config = tiny_config(make_tiny_dataset(tmp_path / "data"), tmp_path / "runs", "persist", "--num_workers", "1")
    train_set = build_dataset(config, "train")
    sampler = EpochShuffleSampler(len(train_set), seed=config.seed)
    loader = make_loader(train_set, config, train=True, sampler=sampler)
    assert loader.persistent_workers
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        train_set.set_epoch(epoch)
        from_workers = next(iter(loader))
        expected = [train_set[key] for key in list(sampler)[:config.batch_size]]
        assert torch.equal(from_workers["image"], torch.stack([sample["image"] for sample in expected]))
        assert torch.equal(from_workers["index"], torch.stack([sample["index"] for sample in expected]))
    sampler.set_epoch(0)
    first = next(iter(loader))["image"]
    sampler.set_epoch(1)
    assert not torch.equal(first, next(iter(loader))["image"])  # a new epoch: new order and augmentations
