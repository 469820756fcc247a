"""One run engine for both trainers (engine/run.py): the Gaze360 trainer gets every guarantee the main trainer has, with
the main trainer's tests (tests/test_resume.py, tests/test_bad_inputs_engine.py) repeated on gaze360_main.py -- a
SIGTERM / Ctrl-C finishes the step, writes a checkpoint and resumes bitwise equal to an uninterrupted run, and so does
a SIGKILL mid-epoch or during a validation; a second job on a run folder is refused while the first runs;
`--eval_weights` builds the model from the stored configuration (a changed architecture option is an error);
`--no_resume` keeps the old run under a new name; a resume with a changed option is refused unless the option may
change, which is then recorded. Tiny synthetic Gaze360 data: 10 training samples, batch 4, 2 steps per epoch."""
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from engine.checkpoint import Checkpointer, load_checkpoint
from engine.run_folder import inspect_folder
from gaze360.synthetic import write_gaze360
from gaze360_main import main as gaze360_main
from tests.conftest import ROOT

TINY = ["--device", "cpu", "--no_wandb", "--input_size", "24", "--num_frames", "3", "--crop_sizes", "24", "16",
        "--frame_crops", "all", "--magnification_deltas", "0", "4", "8", "--batch_size", "4", "--num_workers", "0",
        "--backbone_layers", "1", "1", "--backbone_inplanes", "4", "--backbone_fc", "0", "--feature_size", "8",
        "--lstm_layers", "1", "--epochs", "2", "--lr", "1e-3", "--print_every", "1", "--save_every", "1",
        "--cpu_threads", "1"]

# Runs gaze360_main.py; at optimisation step STEP (0-based) it sends itself SIGNAL, or with PAUSE it writes the file
# PAUSE and waits (up to a minute) until that file is removed; PAUSE_IN_VALIDATION pauses in the first validation.
HOOKED = """
import os, pathlib, signal, sys, time
import gaze360.train
real_step, real_validation, calls = gaze360.train.optimizer_step, gaze360.train.evaluate_split, [0, 0]
def pause():
    flag = pathlib.Path(os.environ["PAUSE"])
    flag.write_text(str(os.getpid()))
    deadline = time.time() + 60
    while flag.exists() and time.time() < deadline:
        time.sleep(0.05)
def step(*args, **kwargs):
    if calls[0] == int(os.environ.get("STEP", "-1")):
        if "SIGNAL" in os.environ:
            os.kill(os.getpid(), getattr(signal, os.environ["SIGNAL"]))
        else:
            pause()
    calls[0] += 1
    return real_step(*args, **kwargs)
def validation(*args, **kwargs):
    calls[1] += 1
    if calls[1] == 1 and "PAUSE_IN_VALIDATION" in os.environ:
        pause()
    return real_validation(*args, **kwargs)
gaze360.train.optimizer_step, gaze360.train.evaluate_split = step, validation
import gaze360_main
sys.exit(gaze360_main.main(sys.argv[1:]))
"""


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("gaze360")
    write_gaze360(root, seed=3, tracks={"train": 5, "validation": 2, "test": 2}, frames_per_track=8, sizes=(20, 28))
    return root


def flags(data, output, tag, *extra):
    return [*TINY, "--dataset_dir", str(data), "--output_dir", str(output), "--tag", tag, *extra]


def hooked(data, output, tag, *extra, **env):
    """The gaze360_main.py process with the HOOKED wrapper (not waited for)."""
    return subprocess.Popen([sys.executable, "-c", HOOKED, *flags(data, output, tag, *extra)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1", **env})


def run_gaze360(data, output, tag, *extra):
    result = subprocess.run([sys.executable, "gaze360_main.py", *flags(data, output, tag, *extra)], cwd=ROOT,
                            capture_output=True, text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result


def wait_for(path, process, seconds=300):
    deadline = time.time() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.time() < deadline, f"{path} never appeared"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def straight(data, tmp_path_factory):
    """The uninterrupted 2-epoch run every interrupted one must end equal to."""
    output = tmp_path_factory.mktemp("straight")
    run_gaze360(data, output, "straight")
    return output / "straight"


def assert_same_run(expected, found):
    """Bitwise equal training state (last.pt and best.pt), equal final metrics, and each step logged once."""
    a, b = load_checkpoint(expected / "last.pt"), load_checkpoint(found / "last.pt")
    assert (a["epoch"], a["step"], a["best"]) == (b["epoch"], b["step"], b["best"])
    for name, tensor in a["model"].items():
        assert torch.equal(tensor, b["model"][name]), name
    for index, values in a["optimizer"]["state"].items():
        assert torch.equal(values["exp_avg_sq"], b["optimizer"]["state"][index]["exp_avg_sq"])
    assert torch.equal(a["rng"]["torch"], b["rng"]["torch"])
    best_a, best_b = load_checkpoint(expected / "best.pt"), load_checkpoint(found / "best.pt")
    assert all(torch.equal(t, best_b["model"][k]) for k, t in best_a["model"].items())
    metrics_a, metrics_b = (json.loads((folder / "metrics.json").read_text()) for folder in (expected, found))
    assert metrics_a["test"] == metrics_b["test"] and metrics_a["validation"] == metrics_b["validation"]
    log = [json.loads(line) for line in (found / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log if r["type"] == "train"] == [1, 2, 3, 4]
    assert [r["step"] for r in log if r["type"] == "validation"] == [2, 4]


@pytest.mark.parametrize("name,at_step,status", [("SIGTERM", 0, 143), ("SIGTERM", 1, 143), ("SIGINT", 2, 130)],
                         ids=["sigterm-mid-epoch", "sigterm-last-step-of-an-epoch", "ctrl-c-first-step-of-epoch-2"])
def test_a_signal_finishes_the_step_writes_a_checkpoint_and_resumes_bitwise(data, straight, tmp_path, name, at_step,
                                                                           status):
    process = hooked(data, tmp_path, "stopped", SIGNAL=name, STEP=str(at_step))
    out, err = process.communicate(timeout=600)
    assert process.returncode == status, err[-3000:]
    checkpoint = tmp_path / "stopped" / "last.pt"
    assert f"{name} received: finishing the current step and writing a checkpoint" in err
    assert f"stopped by {name} after step {at_step + 1}: wrote {checkpoint}; run the same command again to " \
           "resume" in err
    assert "Traceback" not in err and not (tmp_path / "stopped" / "run.lock").exists()
    state = load_checkpoint(checkpoint)
    assert state["step"] == at_step + 1 and state["batch_in_epoch"] == (at_step % 2) + 1
    assert state["trainer"] == "gaze360_main.py"
    resumed = run_gaze360(data, tmp_path, "stopped")
    assert (f"(batch {at_step % 2 + 1} of the epoch)" if at_step % 2 == 0 else "(its validation)") in resumed.stdout
    assert_same_run(straight, tmp_path / "stopped")


@pytest.mark.parametrize("where", ["mid-epoch", "during-validation"])
def test_sigkill_mid_epoch_or_during_a_validation_resumes_bitwise(data, straight, tmp_path, where):
    flag = tmp_path / "paused"
    env = {"PAUSE": str(flag), **({"STEP": "3"} if where == "mid-epoch" else {"PAUSE_IN_VALIDATION": "1"})}
    process = hooked(data, tmp_path, "killed", **env)
    wait_for(flag, process)
    os.kill(process.pid, signal.SIGKILL)
    process.communicate()
    state = load_checkpoint(tmp_path / "killed" / "last.pt")
    # mid-epoch: the last checkpoint is epoch 1's; during the first validation: the one written just before it.
    assert (state["step"], state["batch_in_epoch"]) == ((2, 0) if where == "mid-epoch" else (2, 2))
    run_gaze360(data, tmp_path, "killed")
    assert_same_run(straight, tmp_path / "killed")


def test_a_second_job_on_the_same_tag_is_refused_while_the_first_runs(data, tmp_path, capsys, single_thread):
    flag = tmp_path / "paused"
    first = hooked(data, tmp_path, "busy", PAUSE=str(flag), STEP="0")
    wait_for(flag, first)
    before = sorted(p.name for p in (tmp_path / "busy").iterdir())
    code = gaze360_main(flags(data, tmp_path, "busy", "--epochs", "1"))
    err = capsys.readouterr().err
    assert code == 1
    assert re.match(rf"error: {re.escape(str(tmp_path / 'busy'))} is in use by another job \(PID {first.pid} on ",
                    err.strip().splitlines()[-1]), err
    assert sorted(p.name for p in (tmp_path / "busy").iterdir()) == before  # the second job wrote nothing there
    flag.unlink()
    first.communicate(timeout=600)
    assert first.returncode == 0 and load_checkpoint(tmp_path / "busy" / "last.pt")["step"] == 4


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory, single_thread):
    """A finished 1-epoch run (2 steps), trained in this process."""
    output = tmp_path_factory.mktemp("trained")
    assert gaze360_main(flags(data, output, "run", "--epochs", "1")) == 0
    return output


def test_eval_weights_builds_the_model_from_the_checkpoint_and_refuses_a_changed_architecture(data, trained, capsys):
    run = trained / "run"
    trained_metrics = (run / "metrics.json").read_text()
    code = gaze360_main(flags(data, trained, "run", "--eval_weights", str(run / "best.pt"), "--feature_size", "16"))
    err = capsys.readouterr().err
    assert code == 2
    assert re.match(r"configuration error: .*best\.pt: 'feature_size' is 8 in the checkpoint but 16 in command line",
                    err.strip()), err
    # Only the data folder, the device and the weights: the model comes from the checkpoint; an evaluation-time option
    # (the yaw decoding) is applied and recorded; the run's own tag gets a folder of its own inside it.
    code = gaze360_main(["--device", "cpu", "--no_wandb", "--num_workers", "0", "--dataset_dir", str(data),
                         "--output_dir", str(trained), "--tag", "run", "--eval_weights", str(run / "best.pt"),
                         "--yaw_decoding", "atan2"])
    assert code == 0
    assert (run / "metrics.json").read_text() == trained_metrics
    [folder] = list((run / "evaluations").iterdir())
    evaluated = json.loads((folder / "metrics.json").read_text())
    assert evaluated["configuration"] == "stored in the checkpoint"
    assert evaluated["changed_from_checkpoint"] == {
        "yaw_decoding": {"checkpoint": "original", "evaluation": "atan2", "source": "command line"}}
    assert "yaw_decoding: 'original' -> 'atan2'" in (folder / "evaluation.yaml").read_text()
    assert f"evaluation results go to {folder}" in capsys.readouterr().out


def test_no_resume_keeps_the_old_run_under_a_new_name(data, trained, tmp_path, capsys, single_thread):
    import shutil

    shutil.copytree(trained / "run", tmp_path / "again")
    before = {name: (tmp_path / "again" / name).read_bytes() for name in ("best.pt", "last.pt", "metrics.json")}
    assert gaze360_main(flags(data, tmp_path, "again", "--epochs", "1", "--no_resume", "--lr", "2e-3")) == 0
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("again-")]
    assert f"--no_resume: moved the previous run aside to {aside}" in capsys.readouterr().out
    assert {name: (aside / name).read_bytes() for name in before} == before and not (aside / "run.lock").exists()
    assert load_checkpoint(tmp_path / "again" / "last.pt")["config"]["lr"] == 2e-3  # the new run, in the tag


def test_resume_refuses_a_changed_option_and_records_an_allowed_one(data, trained, tmp_path, capsys, single_thread):
    import shutil

    shutil.copytree(trained / "run", tmp_path / "run")
    last = (tmp_path / "run" / "last.pt").read_bytes()
    code = gaze360_main(flags(data, tmp_path, "run", "--epochs", "2", "--lr", "2e-3"))
    err = capsys.readouterr().err
    assert code == 2 and re.match(r"configuration error: .*run/last\.pt: 'lr' is 0\.001 in the checkpoint but 0\.002 "
                                  r"in command line: a resumed run continues one experiment", err.strip()), err
    assert (tmp_path / "run" / "last.pt").read_bytes() == last
    assert gaze360_main(flags(data, tmp_path, "run", "--epochs", "2")) == 0
    out = capsys.readouterr().out
    assert "resuming with changed options (allowed on resume) at step 2: " in out  # the moved folder, and epochs
    assert "epochs: 1 -> 2 (command line)" in out
    config_yaml = (tmp_path / "run" / "config.yaml").read_text()
    assert "# changed on resume at step 2: epochs: 1 -> 2 (command line)" in config_yaml
    state = load_checkpoint(tmp_path / "run" / "last.pt")
    assert state["step"] == 4 and {"step": 2, "option": "epochs", "was": 1, "now": 2, "source": "command line"} in \
        state["config_changes"]


def test_rtgene_folds_are_one_run_resumed_and_moved_aside_together(tmp_path, capsys, single_thread):
    from gaze360.synthetic import write_rtgene

    root = tmp_path / "rtgene"
    write_rtgene(root, seed=0, images_per_subject=2, size=24)
    rt = ["--dataset", "rtgene", "--num_frames", "1", "--rtgene_face", "original", "--rtgene_folds", "1", "2",
          "--epochs", "1"]
    assert gaze360_main(flags(root, tmp_path, "rt", *rt)) == 0
    contents = inspect_folder(tmp_path / "rt", ("fold_*",))
    assert contents.kind == "run" and {p.parent.name for p in contents.checkpoints} == {"fold_1", "fold_2"}
    capsys.readouterr()
    assert gaze360_main(flags(root, tmp_path, "rt", *rt)) == 0  # resumed: both folds finished, re-evaluated
    assert capsys.readouterr().out.count("resuming") == 2
    assert gaze360_main(flags(root, tmp_path, "rt", *rt, "--no_resume")) == 0
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("rt-")]
    assert (aside / "fold_1" / "last.pt").is_file() and (aside / "fold_2" / "best.pt").is_file()
    # A Gaze360 run on the tag of RT-GENE folds would resume none of them: refused, nothing moved.
    code = gaze360_main(flags(root, tmp_path, "rt"))
    assert code == 2 and "holds checkpoints (fold_1/best.pt" in capsys.readouterr().err


def test_the_checkpointer_writes_and_restores_every_part(tmp_path):
    model, other = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    optimizer = torch.optim.Adam(model.parameters())
    model(torch.ones(1, 3)).sum().backward()
    optimizer.step()

    class Config:
        def to_dict(self):
            return {"lr": 0.1}

    Checkpointer("gaze360_main.py", model=model, optimizer=optimizer).save(tmp_path / "c.pt", Config(), step=7)
    state = load_checkpoint(tmp_path / "c.pt")
    assert state["trainer"] == "gaze360_main.py" and state["step"] == 7 and state["config"] == {"lr": 0.1}
    expected_rng = torch.get_rng_state()
    torch.rand(5)
    fresh = torch.optim.Adam(other.parameters())
    assert Checkpointer("gaze360_main.py", model=other, optimizer=fresh).restore(state, "c.pt") == []
    assert torch.equal(other.weight, model.weight) and torch.equal(torch.get_rng_state(), expected_rng)
    assert fresh.state_dict()["state"][0]["step"] == 1
    with pytest.raises(ValueError, match="c.pt: a checkpoint for the Gaze360 / RT-GENE trainer"):
        Checkpointer("main.py", model=other).restore(state, "c.pt")
    with pytest.raises(ValueError, match=r"c.pt: holds no ema state"):
        Checkpointer("gaze360_main.py", model=other, ema=torch.nn.Linear(1, 1)).restore(state, "c.pt")
    assert Checkpointer("gaze360_main.py", model=other, ema=torch.nn.Linear(1, 1)).restore(
        state, "c.pt", optional=("ema",)) == ["ema"]
    with pytest.raises(ValueError, match=r"c.pt: its weights do not fit the model built from its own stored"):
        Checkpointer("gaze360_main.py", model=torch.nn.Linear(4, 2)).restore(state, "c.pt")
