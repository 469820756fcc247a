"""The engine's half of the bad-input catalogue (the data half is tests/test_bad_inputs.py): each case a user can
cause -- an evaluation or a resume whose options contradict the checkpoint, corrupt or foreign weight files, an empty
YAML file, options nothing reads, a run folder in use, a full disk, a normalised head box -- ends with one clear line
naming the file or option, and the exit status main.py / predict.py document (2 bad input, 1 failed run), never a
traceback. Tiny synthetic data; one tiny training run shared by the module."""
import json
import os
import re
import shutil
import socket
import subprocess
import sys

import pytest
import torch
from PIL import Image

import main as main_module
import predict as predict_module
from engine.checkpoint import load_checkpoint, save_checkpoint
from engine.run_folder import RunLock, RunLocked, evaluation_dir, trim_log
from pretrained.export import export_safetensors
from tests.test_end_to_end import TINY
from tests.tiny_runs import fill_disk_after, make_tiny_dataset

PREFIXES = ("configuration error:", "error:", "predict.py: error:")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    """A finished 1-epoch tiny run (2 steps) and the data it was trained on."""
    root = tmp_path_factory.mktemp("engine_bad_inputs")
    dataset = make_tiny_dataset(root / "data")
    code = main_module.main(flags(dataset, root / "runs", "trained", "--epochs", "1"))
    assert code == 0
    return {"root": root, "dataset": dataset, "runs": root / "runs", "run": root / "runs" / "trained"}


def flags(dataset, output_dir, tag, *extra):
    return [*TINY, "--source_dataset_dir", str(dataset), "--output_dir", str(output_dir), "--tag", tag, *extra]


def minimal_flags(dataset, output_dir, tag, *extra):
    """What a user types to evaluate: no model options at all (they come from the checkpoint)."""
    return ["--device", "cpu", "--no_wandb", "--num_workers", "0", "--source_dataset_dir", str(dataset),
            "--output_dir", str(output_dir), "--tag", tag, *extra]


def message_line(stderr: str) -> str:
    """The error line the program printed (progress bars share stderr)."""
    lines = [line.strip() for chunk in stderr.splitlines() for line in chunk.split("\r")]
    found = [line for line in lines if line.startswith(PREFIXES)]
    assert found, f"no error line in stderr: {stderr[-2000:]}"
    return found[0]


def copy_run(trained, tag):
    target = trained["runs"] / tag
    shutil.copytree(trained["run"], target)
    return target


# --- cases: (name, how to build argv from the shared run, expected status, first line) --------------------------

def _empty_yaml(t, tmp):
    (tmp / "empty.yaml").write_text("# nothing here\n")
    return flags(t["dataset"], tmp, "x", "--yaml_gaze", str(tmp / "empty.yaml"))


def _eval_architecture_differs(t, tmp):
    return flags(t["dataset"], tmp, "x", "--eval_weights", str(t["run"] / "last.pt"), "--unet_inplanes", "16")


def _resume_lr_differs(t, tmp):
    copy_run(t, "lr_changed")
    return flags(t["dataset"], t["runs"], "lr_changed", "--epochs", "2", "--lr", "0.001")


def _resume_loss_differs(t, tmp):
    copy_run(t, "loss_changed")
    return flags(t["dataset"], t["runs"], "loss_changed", "--batch_size", "2", "--x_loss", "false")


def _epochs_with_run_length_schedule(t, tmp):
    copy_run(t, "scheduled")
    checkpoint = load_checkpoint(t["runs"] / "scheduled" / "last.pt")
    del checkpoint["config"]["lr_schedule"]  # as if an earlier version had trained it with the cosine schedule
    checkpoint["config"]["lr_schedular"] = True  # (its spelling) over its 1 epoch
    save_checkpoint(t["runs"] / "scheduled" / "last.pt", checkpoint)
    return flags(t["dataset"], t["runs"], "scheduled", "--epochs", "3")


def _corrupt_safetensors(t, tmp):
    (tmp / "random.safetensors").write_bytes(os.urandom(4096))
    return flags(t["dataset"], tmp, "x", "--eval_weights", str(tmp / "random.safetensors"))


def _random_bytes_pt(t, tmp):
    (tmp / "random.pt").write_bytes(os.urandom(4096))
    return flags(t["dataset"], tmp, "x", "--eval_weights", str(tmp / "random.pt"))


def _truncated_pt(t, tmp):
    (tmp / "torn.pt").write_bytes((t["run"] / "last.pt").read_bytes()[:5000])
    return flags(t["dataset"], tmp, "x", "--eval_weights", str(tmp / "torn.pt"))


def _corrupt_last_pt_on_resume(t, tmp):
    folder = copy_run(t, "torn_resume")
    (folder / "last.pt").write_bytes((folder / "last.pt").read_bytes()[:5000])
    return flags(t["dataset"], t["runs"], "torn_resume", "--epochs", "2")


def _wrong_architecture_safetensors(t, tmp):
    export_safetensors(t["run"] / "last.pt", tmp / "weights.safetensors")
    return flags(t["dataset"], tmp, "x", "--eval_weights", str(tmp / "weights.safetensors"), "--unet_inplanes", "16")


def _wrong_architecture_on_resume(t, tmp):
    folder = copy_run(t, "foreign")
    checkpoint = load_checkpoint(folder / "last.pt")
    checkpoint["model"]["unet.extra_layer.weight"] = torch.zeros(2)  # written by another version of the model
    save_checkpoint(folder / "last.pt", checkpoint)
    return flags(t["dataset"], t["runs"], "foreign", "--epochs", "2")


def _missing_eval_weights(t, tmp):
    return flags(t["dataset"], tmp, "x", "--eval_weights", str(tmp / "nowhere.pt"))


def _run_folder_in_use(t, tmp):
    (tmp / "busy").mkdir()
    (tmp / "busy" / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                       "since": "2026-01-01 00:00:00"}))
    return flags(t["dataset"], tmp, "busy")


def _unread(option, value):
    def build(t, tmp):
        return flags(t["dataset"], tmp, "x", f"--{option}", value)
    return build


CASES = [
    ("empty_yaml", _empty_yaml, 2, r"configuration error: .*empty\.yaml: the file is empty \(no options\)"),
    ("unread_offset_noise_strength", _unread("offset_noise_strength", "0.3"), 2,
     r"configuration error: 'offset_noise_strength' \(command line\) = 0\.3 is read only with 'noise_changer'"),
    ("unread_ema_rate", _unread("ema_rate", "0.99"), 2,
     r"configuration error: 'ema_rate' \(command line\) = 0\.99 is read only with 'ema_on'"),
    ("unread_time_noise", _unread("time_noise", "10"), 2,
     r"configuration error: 'time_noise' \(command line\) = 10 is read only with 'eval_from_picture'"),
    ("eval_option_differs_from_checkpoint", _eval_architecture_differs, 2,
     r"configuration error: .*last\.pt: 'unet_inplanes' is 8 in the checkpoint but 16 in command line: evaluation "
     r"builds the model"),
    ("resume_with_changed_lr", _resume_lr_differs, 2,
     r"configuration error: .*last\.pt: 'lr' is 0\.00025 in the checkpoint but 0\.001 in command line: a resumed "
     r"run continues one experiment"),
    ("resume_with_changed_batch_and_loss", _resume_loss_differs, 2,
     r"configuration error: .*'batch_size' is 4 in the checkpoint but 2 in command line; 'x_loss' is True in the "
     r"checkpoint but False"),
    ("resume_extending_a_run_length_schedule", _epochs_with_run_length_schedule, 2,
     r"configuration error: .*last\.pt: epochs: 1 -> 3 \(command line\) on resume, but 'lr_schedule' \(.*as "
     r"lr_schedular: true\) = 'warmup_cosine': it spreads the learning-rate schedule"),
    ("corrupt_safetensors", _corrupt_safetensors, 2,
     r"error: .*random\.safetensors: not a valid \.safetensors file \(.*header.*\): it is truncated or corrupt"),
    ("random_bytes_pt", _random_bytes_pt, 2,
     r"error: .*random\.pt: cannot be loaded: the file is truncated, corrupt or not a torch checkpoint"),
    ("truncated_pt", _truncated_pt, 2,
     r"error: .*torn\.pt: cannot be loaded: the file is truncated, corrupt or not a torch checkpoint"),
    ("corrupt_last_pt_on_resume", _corrupt_last_pt_on_resume, 2,
     r"error: .*torn_resume/last\.pt: cannot be loaded: the file is truncated, corrupt"),
    ("wrong_architecture_safetensors", _wrong_architecture_safetensors, 2,
     r"error: .*weights\.safetensors: \d+ tensors have other shapes than the model's \(nothing loaded\): the "
     r"weights are of another architecture"),
    ("wrong_architecture_on_resume", _wrong_architecture_on_resume, 2,
     r"error: .*foreign/last\.pt: its weights do not fit the model built from its own stored configuration "
     r"\(Error\(s\) in loading state_dict"),
    ("missing_eval_weights", _missing_eval_weights, 2, r"error: checkpoint not found: .*nowhere\.pt"),
    ("run_folder_in_use", _run_folder_in_use, 1,
     rf"error: .*busy is in use by another job \(PID {os.getpid()} on {re.escape(socket.gethostname())}"),
]


@pytest.mark.parametrize("build,status,first_line", [case[1:] for case in CASES], ids=[case[0] for case in CASES])
def test_bad_input_gives_one_clear_line_and_exit_status(trained, tmp_path, capsys, build, status, first_line):
    argv = build(trained, tmp_path)
    capsys.readouterr()
    code = main_module.main(argv)
    err = capsys.readouterr().err
    line = message_line(err)
    assert code == status, err[-3000:]
    assert re.match(first_line, line), line
    assert "Traceback" not in err and "--trust_legacy_checkpoint" not in line


def test_disk_full_while_writing_a_checkpoint_is_one_line_and_leaves_nothing_behind(trained, tmp_path, capsys,
                                                                                    monkeypatch):
    fill_disk_after(monkeypatch, 10_000)  # the device fills up after 10 kB, as a real full disk reports it
    code = main_module.main(flags(trained["dataset"], tmp_path, "full", "--epochs", "1"))
    line = message_line(capsys.readouterr().err)
    assert code == 1
    # The first checkpoint of the run: there is no previous last.pt, and the message says so (issue 23).
    assert re.match(r"error: cannot write .*full/last\.pt: no space left on the device \(or the disk quota is used "
                    r"up\); there is no earlier last\.pt in .*full, nor any other checkpoint", line), line
    assert not list((tmp_path / "full").glob(".last.pt.*"))  # the temporary file is removed


def test_normalised_head_box_in_predict_is_an_error_giving_the_pixel_box(trained, tmp_path, capsys):
    Image.new("RGB", (200, 100), (90, 120, 150)).save(tmp_path / "scene.jpg")
    code = predict_module.main(["--weights", str(trained["run"] / "last.pt"), "--image", str(tmp_path / "scene.jpg"),
                                "--head_box", "0.1,0.5,0.3,0.7", "--out", str(tmp_path / "out"), "--device", "cpu"])
    line = message_line(capsys.readouterr().err)
    assert code == 2
    assert re.match(r"predict\.py: error: --head_box #1 \(0\.1,0\.5,0\.3,0\.7\): head box \(0\.1, 0\.5, 0\.3, 0\.7\) of person1 looks normalised "
                    r"to \[0, 1\]; head boxes are in pixels: in the 200x100 image .* that box is \(20, 50, 60, 70\)",
                    line), line


# --- behaviour: evaluation and resume follow the checkpoint's configuration ----------------------------------------

def test_evaluation_builds_from_the_checkpoint_and_never_overwrites_the_training_run(trained, capsys):
    run = trained["run"]
    trained_metrics = (run / "metrics.json").read_text()
    # No model option given: everything comes from the checkpoint, so the training run's numbers are reproduced;
    # the tag is the training run's own, so the results go to a folder of their own inside it.
    code = main_module.main(minimal_flags(trained["dataset"], trained["runs"], "trained",
                                          "--eval_weights", str(run / "last.pt")))
    assert code == 0
    assert (run / "metrics.json").read_text() == trained_metrics
    [folder] = list((run / "evaluations").iterdir())
    evaluated, expected = json.loads((folder / "metrics.json").read_text()), json.loads(trained_metrics)
    for key in ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang"):
        assert evaluated[key] == pytest.approx(expected[key], abs=1e-9), key
    assert evaluated["configuration"] == "stored in the checkpoint" and "changed_from_checkpoint" not in evaluated
    assert f"evaluation results go to {folder}" in capsys.readouterr().out

    # An evaluation-time option is applied, said, and recorded in metrics.json and evaluation.yaml.
    code = main_module.main(minimal_flags(trained["dataset"], trained["runs"], "eval_k2", "--eval_weights",
                                          str(run / "last.pt"), "--sample_time_steps", "3", "--sample_k", "2"))
    assert code == 0
    summary = json.loads((trained["runs"] / "eval_k2" / "metrics.json").read_text())
    assert summary["sample_steps"] == 3 and summary["sample_k"] == 2
    assert summary["changed_from_checkpoint"] == {
        "sample_time_steps": {"checkpoint": 5, "evaluation": 3, "source": "command line"},
        "sample_k": {"checkpoint": 1, "evaluation": 2, "source": "command line"}}
    assert "sample_time_steps: 5 -> 3 (command line)" in (trained["runs"] / "eval_k2" / "evaluation.yaml").read_text()
    assert "evaluation-time options changed: sample_time_steps: 5 -> 3" in capsys.readouterr().out


def test_resume_applies_allowed_changes_records_them_and_logs_each_step_once(trained, capsys):
    folder = copy_run(trained, "extended")
    with open(folder / "metrics.jsonl", "a") as log:  # records an interrupted job wrote after its last checkpoint
        log.write(json.dumps({"type": "train", "step": 3, "loss": 1.0}) + "\n" + '{"type": "train", "st')
    # Only the run's folder and the allowed change are given: every other option comes from last.pt.
    code = main_module.main(minimal_flags(trained["dataset"], trained["runs"], "extended", "--epochs", "2",
                                          "--evaluate_every", "5"))
    assert code == 0
    out = capsys.readouterr().out
    # The folder was copied under another name: the tag counts as changed too (a renamed run folder is allowed).
    assert "resuming with changed options (allowed on resume) at step 2: tag: 'trained' -> 'extended' (command " \
           "line); epochs: 1 -> 2 (command line); evaluate_every: 100 -> 5 (command line)" in out
    assert "dropped the records logged after step 2" in out
    text = (folder / "config.yaml").read_text()
    assert "# changed on resume at step 2: epochs: 1 -> 2 (command line)" in text
    assert "epochs: 2" in text
    steps = [record["step"] for record in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines())
             if record["type"] == "train"]
    assert steps == [1, 2, 3, 4]
    state = load_checkpoint(folder / "last.pt")
    assert state["step"] == 4 and state["config"]["epochs"] == 2 and state["config"]["input_size"] == 64
    assert state["config_changes"][1] == {"step": 2, "option": "epochs", "was": 1, "now": 2, "source": "command line"}


def test_no_resume_moves_the_previous_run_aside(trained, capsys):
    folder = copy_run(trained, "again")
    before = (folder / "last.pt").read_bytes()
    code = main_module.main(flags(trained["dataset"], trained["runs"], "again", "--epochs", "1", "--no_resume",
                                  "--sample_time_steps", "1"))
    assert code == 0
    [aside] = [p for p in trained["runs"].iterdir() if p.name.startswith("again-")]
    assert (aside / "last.pt").read_bytes() == before and not (aside / "run.lock").exists()
    assert f"--no_resume: moved the previous run aside to {aside}" in capsys.readouterr().out
    assert (folder / "last.pt").is_file() and not (folder / "run.lock").exists()  # the new run, lock released


# --- the run lock and the folders, unit by unit ---------------------------------------------------------------------

def test_run_lock_stops_a_second_job_and_takes_over_a_dead_ones(tmp_path, capsys):
    with RunLock(tmp_path / "run") as lock:
        record = json.loads(lock.path.read_text())
        assert record["pid"] == os.getpid() and record["host"] == socket.gethostname()
        with pytest.raises(RunLocked, match=rf"in use by another job \(PID {os.getpid()}"):
            RunLock(tmp_path / "run").acquire()
    assert not (tmp_path / "run" / "run.lock").exists()

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "run" / "run.lock").write_text(json.dumps({"pid": int(dead.stdout), "host": socket.gethostname()}))
    with RunLock(tmp_path / "run"):
        assert "taking over the lock of a job that is no longer running (PID" in capsys.readouterr().out
    (tmp_path / "run" / "run.lock").write_text('{"pid": 12')  # torn by a job killed while writing it
    with RunLock(tmp_path / "run"):
        assert "an unreadable lock" in capsys.readouterr().out
    # A live process of the same PID that started later (the PID was reused) does not hold the lock either.
    (tmp_path / "run" / "run.lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(),
                                                           "started": "1"}))
    with RunLock(tmp_path / "run"):
        pass


def test_evaluation_folder_and_log_trimming(tmp_path):
    assert evaluation_dir(tmp_path, "fresh", "w/last.pt") == tmp_path / "fresh"
    (tmp_path / "trained").mkdir()
    (tmp_path / "trained" / "config.yaml").write_text("")
    folder = evaluation_dir(tmp_path, "trained", "w/ckpt_epoch_5.pt")
    assert folder.parent == tmp_path / "trained" / "evaluations" and folder.name.startswith("ckpt_epoch_5-")
    log = tmp_path / "metrics.jsonl"
    log.write_text("".join(json.dumps({"type": kind, "step": step}) + "\n"
                           for kind, step in (("train", 1), ("train", 2), ("eval", 2), ("train", 3))) + '{"ty')
    assert trim_log(log, 2) == 2
    assert [json.loads(line)["step"] for line in log.read_text().splitlines()] == [1, 2, 2]


def test_the_reference_lists_the_evaluation_time_and_resumable_options():
    from engine.options import OPTIONS_REFERENCE
    from engine.stored_config import EVALUATION_TIME, RESUMABLE
    from tests.conftest import ROOT

    rows = {line.split("|")[1].strip(" `"): line.split("|")[-2] for line in
            (ROOT / OPTIONS_REFERENCE).read_text().split("<!-- gaze360-options:start")[0].splitlines()
            if line.startswith("| `")}
    for name in EVALUATION_TIME:
        assert f"evaluation: {EVALUATION_TIME[name]}" in rows[name], name
    for name in RESUMABLE:
        assert f"resume: {RESUMABLE[name]}" in rows[name], name
    assert "may differ at" in (ROOT / "README.md").read_text().split("**Evaluation-time options**")[1][:500]


def test_only_this_projects_stored_configuration_is_used():
    from engine.config import ConfigError
    from engine.stored_config import evaluation_config, stored_configuration

    assert stored_configuration({"model": {}, "config": {"hidden_size": 3}}) is None  # another project's "config"
    assert stored_configuration({"model": {}, "config": {"lr": 0.1}}) == {"lr": 0.1}
    with pytest.raises(ConfigError, match="w.pt: its stored configuration has options this version does not know: "
                                          "hidden_size; it was written by another version of the code"):
        evaluation_config({"format": 1, "config": {"hidden_size": 3}}, {}, weights="w.pt")


def test_a_configuration_stored_by_an_earlier_version_keeps_its_meaning():
    """Checkpoints written before an option was renamed (is_subsample_test_set -> test_subsample_fraction; the layout
    flags -> gaze_backbone by name) or before `depth_layout` existed (their depth model was the Tonini-style fusion)
    evaluate as they were trained."""
    from engine.stored_config import evaluation_config, stored_configuration

    old = {"model": {}, "config": {"depth_flag": True, "is_subsample_test_set": 0.25, "lr": 0.1}}
    assert stored_configuration(old) is not None
    config, changes = evaluation_config(old, {}, weights="old.pt")
    assert config.gaze_backbone == "original_depth_tokens" and config.test_subsample_fraction == 0.25
    assert changes == []
    config, _ = evaluation_config({"model": {}, "config": {"depth_flag": True, "depth_layout": "diffusiongaze",
                                                           "attention_layout": False}}, {}, weights="new.pt")
    assert config.gaze_backbone == "diffusiongaze_depth"


def test_the_tables_of_changeable_options_name_declared_options():
    from engine.options import OPTIONS_BY_NAME
    from engine.stored_config import EVALUATION_TIME, RESUMABLE

    assert set(EVALUATION_TIME) <= set(OPTIONS_BY_NAME) and set(RESUMABLE) <= set(OPTIONS_BY_NAME)
