"""The run half of issue 23's catalogue, for both trainers (main.py, gaze360_main.py) and predict.py: a tag is a name,
never a path; nothing a user made is overwritten or moved (`--no_resume` moves only the run's own folder, evaluations
never overwrite results, predict.py's `--out` is new, empty or an earlier prediction replaced on request); a resume
with `--init_weights` is refused with the reason; and what used to crash -- an output folder that is a file or
read-only, a checkpoint of the other trainer, a torn Gaze360 checkpoint, a full disk -- is one line with exit status 2
(bad input) or 1 (a failed run). Each case asserts the exit status, the first line and what is on disk afterwards."""
import hashlib
import json
import os
import re
import shutil

import pytest
import torch
from PIL import Image

import gaze360_main
import main as main_module
import predict as predict_module
from engine.checkpoint import load_checkpoint
from gaze360.synthetic import write_gaze360
from tests.test_end_to_end import TINY as MAIN_TINY
from tests.test_run_engine import TINY as GAZE360_TINY
from tests.tiny_runs import fill_disk_after, make_tiny_dataset

PREFIXES = ("configuration error:", "error:", "data error:", "predict.py: error:")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, single_thread):
    """One finished 1-epoch run of each trainer (in `runs/main` and `runs/g360`), their data, and an image."""
    root = tmp_path_factory.mktemp("bad_inputs_runs")
    main_data, g360_data = make_tiny_dataset(root / "main_data"), root / "g360_data"
    write_gaze360(g360_data, seed=3, tracks={"train": 5, "validation": 2, "test": 2}, frames_per_track=8,
                  sizes=(20, 28))
    assert main_module.main([*MAIN_TINY, "--source_dataset_dir", str(main_data), "--output_dir", str(root / "runs"),
                             "--tag", "main", "--epochs", "1"]) == 0
    assert gaze360_main.main([*GAZE360_TINY, "--dataset_dir", str(g360_data), "--output_dir", str(root / "runs"),
                              "--tag", "g360", "--epochs", "1"]) == 0
    Image.new("RGB", (200, 100), (90, 120, 150)).save(root / "scene.jpg")
    return {"root": root, "main_data": main_data, "g360_data": g360_data, "runs": root / "runs",
            "main": root / "runs" / "main", "g360": root / "runs" / "g360", "image": root / "scene.jpg"}


def main_args(runs, output_dir, tag, *extra):
    return [*MAIN_TINY, "--source_dataset_dir", str(runs["main_data"]), "--output_dir", str(output_dir), "--tag",
            tag, *extra]


def g360_args(runs, output_dir, tag, *extra):
    return [*GAZE360_TINY, "--dataset_dir", str(runs["g360_data"]), "--output_dir", str(output_dir), "--tag", tag,
            *extra]


TRAINERS = {"main.py": (main_module.main, main_args), "gaze360_main.py": (gaze360_main.main, g360_args)}


def call(capsys, trainer, runs, output_dir, tag, *extra):
    """Run a trainer's main in-process: (exit status, the error line it printed, all of stderr)."""
    entry, args = TRAINERS[trainer]
    capsys.readouterr()
    code = entry(args(runs, output_dir, tag, *extra))
    err = capsys.readouterr().err
    return code, message_line(err), err


def message_line(stderr: str) -> str:
    lines = [line.strip() for chunk in stderr.splitlines() for line in chunk.split("\r")]
    found = [line for line in lines if line.startswith(PREFIXES)]
    return found[0] if found else ""


def snapshot(folder) -> dict[str, str]:
    """Every file under `folder` and a digest of its bytes (what must not change)."""
    return {str(p.relative_to(folder)): hashlib.sha1(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def copy(runs, name, where, as_name=None):
    target = where / (as_name or name)
    shutil.copytree(runs[name], target)
    return target


def weights_name(trainer):
    """The checkpoint an evaluation of each trainer's run reads."""
    return "last.pt" if trainer == "main.py" else "best.pt"


def eval_weights(runs, trainer):
    return str(runs["main" if trainer == "main.py" else "g360"] / weights_name(trainer))


def predict_call(capsys, *args):
    capsys.readouterr()
    code = predict_module.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, message_line(captured.err), captured.out + captured.err


# --- a tag is a name, not a path -----------------------------------------------------------------------------------

TAGS = {"parent": ("../x", "is a path"), "absolute": ("{abs}", "is a path"), "nested": ("a/b", "is a path"),
        "empty": ("", "is empty"), "dot": (".", "starts with '.'"), "dotdot": ("..", "starts with '.'"),
        "hidden": (".data_validation", "starts with '.'")}


@pytest.mark.parametrize("mode", ["training", "eval_weights"])
@pytest.mark.parametrize("trainer", sorted(TRAINERS))
@pytest.mark.parametrize("case", sorted(TAGS))
def test_a_tag_that_is_not_a_plain_name_is_refused_before_anything_is_written(runs, tmp_path, capsys, case, trainer,
                                                                              mode):
    output = tmp_path / "out"
    output.mkdir()
    (output / "other_run").mkdir()
    (output / "other_run" / "last.pt").write_bytes(b"someone else's run")
    tag, problem = TAGS[case]
    tag = tag.format(abs=tmp_path / "abs" / "x")
    extra = ("--eval_weights", eval_weights(runs, trainer)) if mode == "eval_weights" else ()
    before = snapshot(tmp_path)
    code, line, err = call(capsys, trainer, runs, output, tag, *extra)
    assert code == 2, err[-2000:]
    assert line.startswith(f"configuration error: 'tag' (command line) = {tag!r} {problem}"), line
    assert "a tag is the name of the run's folder inside output_dir, not a path" in line
    assert snapshot(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


# --- output locations that cannot be used --------------------------------------------------------------------------

@pytest.mark.parametrize("mode", ["training", "eval_weights"])
@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_an_output_dir_that_is_a_file_or_read_only_is_one_line(runs, tmp_path, capsys, monkeypatch, trainer, mode):
    extra = ("--eval_weights", eval_weights(runs, trainer)) if mode == "eval_weights" else ()
    (tmp_path / "a_file").write_text("notes\n")
    code, line, _ = call(capsys, trainer, runs, tmp_path / "a_file", "run", *extra)
    assert code == 2 and line == (f"error: 'output_dir' (command line) = '{tmp_path / 'a_file'}' is a file, not a "
                                  "folder: give a folder that holds one sub-folder per run"), line
    code, line, _ = call(capsys, trainer, runs, tmp_path / "a_file" / "runs", "run", *extra)
    assert code == 2 and f"cannot be made: {tmp_path / 'a_file'} is a file" in line, line
    assert (tmp_path / "a_file").read_text() == "notes\n"

    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "run").write_text("a file where the run folder would be\n")
    code, line, _ = call(capsys, trainer, runs, tmp_path / "out", "run", *extra)
    assert code == 2 and line.startswith(f"error: {tmp_path / 'out' / 'run'} is a file"), line

    read_only = tmp_path / "read_only"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() == 0:  # root writes anyway: make the check see what a read-only mount would show
        import engine.run_folder

        real_access = engine.run_folder.os.access
        monkeypatch.setattr(engine.run_folder.os, "access",
                            lambda path, mode: False if str(path) == str(read_only) else real_access(path, mode))
    code, line, _ = call(capsys, trainer, runs, read_only, "run", *extra)
    read_only.chmod(0o755)
    assert code == 2 and line.startswith(f"error: 'output_dir' (command line) = '{read_only}' is not writable"), line
    assert list(read_only.iterdir()) == []


def test_predict_refuses_an_out_that_is_a_file(runs, tmp_path, capsys):
    (tmp_path / "out").write_text("notes\n")
    code, line, _ = predict_call(capsys, "--weights", runs["main"] / "last.pt", "--image", runs["image"],
                                 "--head_box", "20,10,60,50", "--out", tmp_path / "out", "--device", "cpu")
    assert code == 2, line
    assert line == f"predict.py: error: --out {tmp_path / 'out'} is a file, not a folder: give a new or empty folder"
    assert (tmp_path / "out").read_text() == "notes\n"


# --- nothing is lost: training -------------------------------------------------------------------------------------

@pytest.mark.parametrize("no_resume", [False, True], ids=["resume", "no_resume"])
@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_training_never_writes_into_or_moves_a_folder_that_is_not_its_own_run(runs, tmp_path, capsys, trainer,
                                                                             no_resume):
    other = "g360" if trainer == "main.py" else "main"
    copy(runs, other, tmp_path, "other_trainer")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "ideas.txt").write_text("my notes\n")
    (tmp_path / "evaluated").mkdir()
    (tmp_path / "evaluated" / "evaluation.yaml").write_text("tag: x\n")
    (tmp_path / "evaluated" / "metrics.json").write_text("{}\n")
    before = snapshot(tmp_path)
    extra = ("--no_resume",) if no_resume else ()
    made = "Gaze360 / RT-GENE" if trainer == "main.py" else "gaze-following"
    expected = {"other_trainer": f"holds a run of the {made} trainer",
                "notes": "holds files no training run writes (ideas.txt): nothing there is overwritten or moved",
                "evaluated": "holds the results of an evaluation (evaluation.yaml, metrics.json), not a training run"}
    for tag, says in expected.items():
        code, line, err = call(capsys, trainer, runs, tmp_path, tag, "--epochs", "1", *extra)
        assert code == 2, err[-2000:]
        assert line.startswith(f"error: {tmp_path / tag} {says}"), line
    assert snapshot(tmp_path) == before and len(list(tmp_path.iterdir())) == 3  # nothing moved aside


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_no_resume_moves_only_the_runs_own_folder(runs, tmp_path, capsys, trainer):
    own = "main" if trainer == "main.py" else "g360"
    folder = copy(runs, own, tmp_path, "run")
    copy(runs, own, tmp_path, "neighbour")
    run_before, neighbour_before = snapshot(folder), snapshot(tmp_path / "neighbour")
    code, line, err = call(capsys, trainer, runs, tmp_path, "run", "--epochs", "1", "--no_resume")
    assert code == 0, err[-2000:]
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run-")]
    assert snapshot(aside) == run_before and snapshot(tmp_path / "neighbour") == neighbour_before
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".data_validation", "neighbour", "run", aside.name])
    assert (folder / "last.pt").is_file() and not (aside / "run.lock").exists()


@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_checkpoints_without_the_last_pt_to_resume_are_not_overwritten(runs, tmp_path, capsys, trainer):
    folder = copy(runs, "main" if trainer == "main.py" else "g360", tmp_path, "run")
    (folder / "last.pt").unlink()
    before = snapshot(folder)
    code, line, _ = call(capsys, trainer, runs, tmp_path, "run", "--epochs", "1")
    assert code == 2 and line.startswith(f"error: {folder} holds checkpoints (") and "but not last.pt" in line, line
    assert snapshot(folder) == before


# --- nothing is lost: evaluations ----------------------------------------------------------------------------------

@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_evaluations_never_overwrite_results(runs, tmp_path, capsys, trainer):
    weights = eval_weights(runs, trainer)
    code, _, err = call(capsys, trainer, runs, tmp_path, "evaluated", "--eval_weights", weights)
    assert code == 0, err[-2000:]
    first = snapshot(tmp_path / "evaluated")
    assert "metrics.json" in first and "evaluation.yaml" in first
    code, _, err = call(capsys, trainer, runs, tmp_path, "evaluated", "--eval_weights", weights)
    assert code == 0, err[-2000:]
    [second] = list((tmp_path / "evaluated" / "evaluations").iterdir())
    assert (second / "metrics.json").is_file()
    assert {k: v for k, v in snapshot(tmp_path / "evaluated").items() if not k.startswith("evaluations")} == first
    # Evaluated into the training run's own tag: the run's results stay as they are.
    folder = copy(runs, "main" if trainer == "main.py" else "g360", tmp_path, "trained")
    before = snapshot(folder)
    code, _, err = call(capsys, trainer, runs, tmp_path, "trained", "--eval_weights",
                        str(folder / weights_name(trainer)))
    assert code == 0, err[-2000:]
    assert {k: v for k, v in snapshot(folder).items() if not k.startswith("evaluations")} == before
    assert (next((folder / "evaluations").iterdir()) / "metrics.json").is_file()
    # A folder holding someone else's files is refused.
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "ideas.txt").write_text("my notes\n")
    code, line, _ = call(capsys, trainer, runs, tmp_path, "notes", "--eval_weights", weights)
    assert code == 2 and line.startswith(f"error: {tmp_path / 'notes'} holds files no run or evaluation writes "
                                         "(ideas.txt)"), line
    assert sorted(p.name for p in (tmp_path / "notes").iterdir()) == ["ideas.txt"]


# --- nothing is lost: predict.py's --out ----------------------------------------------------------------------------

def test_predict_out_is_new_empty_or_an_earlier_prediction_replaced_on_request(runs, tmp_path, capsys):
    weights, image = runs["main"] / "last.pt", runs["image"]
    base = ["--weights", weights, "--image", image, "--device", "cpu"]
    two_people = [*base, "--head_box", "20,10,60,50", "--head_box", "120,20,160,60"]
    # a training run's folder (it holds a predictions.csv of its own evaluation)
    folder = copy(runs, "main", tmp_path, "run")
    before = snapshot(folder)
    code, line, _ = predict_call(capsys, *two_people, "--out", folder)
    assert code == 2 and line.startswith(f"predict.py: error: --out {folder} holds a training run ("), line
    assert "nothing there is overwritten: choose another --out" in line and snapshot(folder) == before
    # a folder holding anything else
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "ideas.txt").write_text("my notes\n")
    code, line, _ = predict_call(capsys, *two_people, "--out", tmp_path / "notes")
    assert code == 2 and line.startswith(f"predict.py: error: --out {tmp_path / 'notes'} holds files predict.py did "
                                         "not write (ideas.txt)"), line
    # new, then reused: refused without --overwrite, replaced (people of the earlier prediction gone) with it
    out = tmp_path / "prediction"
    assert predict_call(capsys, *two_people, "--out", out)[0] == 0
    first = snapshot(out)
    assert sorted(first) == ["overlays/scene_person1.png", "overlays/scene_person2.png", "predictions.csv",
                             "predictions.json"]
    code, line, _ = predict_call(capsys, *base, "--head_box", "20,10,60,50", "--out", out)
    assert code == 2 and line.startswith(f"predict.py: error: --out {out} holds an earlier prediction (overlays, "
                                         "predictions.csv, predictions.json): pass --overwrite to replace it"), line
    assert snapshot(out) == first
    assert predict_call(capsys, *base, "--head_box", "20,10,60,50", "--out", out, "--overwrite")[0] == 0
    assert sorted(snapshot(out)) == ["overlays/scene_person1.png", "predictions.csv", "predictions.json"]
    assert [row["person"] for row in json.loads((out / "predictions.json").read_text())["predictions"]] == ["person1"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no partial folder left beside it
    # an empty folder the user made is fine; a failed prediction leaves nothing there
    (tmp_path / "empty").mkdir()
    code, line, _ = predict_call(capsys, *base, "--head_box", "0.1,0.5,0.3,0.7", "--out", tmp_path / "empty")
    assert code == 2 and list((tmp_path / "empty").iterdir()) == []
    assert predict_call(capsys, *base, "--head_box", "20,10,60,50", "--out", tmp_path / "empty")[0] == 0


# --- a resume with --init_weights ----------------------------------------------------------------------------------

@pytest.mark.parametrize("trainer,option", [("main.py", "init_weights"), ("gaze360_main.py", "init_weights"),
                                            ("gaze360_main.py", "backbone_weights")])
def test_a_resume_refuses_new_initial_weights_with_the_reason(runs, tmp_path, capsys, trainer, option):
    own = "main" if trainer == "main.py" else "g360"
    folder = copy(runs, own, tmp_path, "run")
    before = snapshot(folder)
    code, line, _ = call(capsys, trainer, runs, tmp_path, "run", "--epochs", "2", f"--{option}",
                         str(runs[own] / "last.pt"))
    assert code == 2
    assert re.match(rf"configuration error: {re.escape(str(folder / 'last.pt'))}: '{option}' is None in the "
                    rf"checkpoint but '{re.escape(str(runs[own] / 'last.pt'))}' in command line: it is read only when "
                    r"a run starts, and this run resumes from its checkpoint \(step 2\)", line), line
    assert "--no_resume (the old run is moved aside) or another --tag" in line
    assert snapshot(folder) == before


def test_no_resume_reads_initial_weights_from_where_the_old_run_was_moved(runs, tmp_path, capsys):
    folder = copy(runs, "main", tmp_path, "run")
    code, _, err = call(capsys, "main.py", runs, tmp_path, "run", "--epochs", "1", "--no_resume", "--init_weights",
                        str(folder / "last.pt"))
    assert code == 0, err[-2000:]
    [aside] = [p for p in tmp_path.iterdir() if p.name.startswith("run-")]
    assert load_checkpoint(folder / "last.pt")["config"]["init_weights"] == str(aside / "last.pt")


# --- a checkpoint of the other trainer, a torn Gaze360 checkpoint ---------------------------------------------------

OTHER = "error: {path}: a checkpoint for the {made}, not for the {wanted}"
MAIN_NAME, G360_NAME = "gaze-following trainer (main.py)", "Gaze360 / RT-GENE trainer (gaze360_main.py)"


@pytest.mark.parametrize("trainer,option", [("main.py", "--eval_weights"), ("main.py", "--init_weights"),
                                            ("gaze360_main.py", "--eval_weights"),
                                            ("gaze360_main.py", "--init_weights")])
def test_a_checkpoint_of_the_other_trainer_says_which_trainer_made_it(runs, tmp_path, capsys, trainer, option):
    weights = runs["g360"] / "best.pt" if trainer == "main.py" else runs["main"] / "last.pt"
    code, line, err = call(capsys, trainer, runs, tmp_path, "run", option, str(weights))
    assert code == 2 and "Traceback" not in err, err[-2000:]
    if trainer == "main.py" and option == "--init_weights":  # read through the renaming schemes: it says whose it is
        assert line.startswith(f"error: {weights}: cannot detect the checkpoint's naming scheme") and \
            f"it holds a model for the {G360_NAME}" in line, line
    else:
        made, wanted = (G360_NAME, MAIN_NAME) if trainer == "main.py" else (MAIN_NAME, G360_NAME)
        assert line.startswith(OTHER.format(path=weights, made=made, wanted=wanted)), line
    assert not any((tmp_path / "run").glob("*.pt"))


def test_an_original_multizoomgaze_file_given_to_main_py_says_so(runs, tmp_path, capsys):
    state = load_checkpoint(runs["g360"] / "best.pt")["model"]
    torch.save({"epoch": 3, "state_dict": {f"module.base_model.{k}": v for k, v in state.items()}},
               tmp_path / "original.pth.tar")
    code, line, _ = call(capsys, "main.py", runs, tmp_path, "run", "--eval_weights", str(tmp_path / "original.pth.tar"))
    assert code == 2 and line.startswith(OTHER.format(path=tmp_path / "original.pth.tar", made=G360_NAME,
                                                      wanted=MAIN_NAME)), line


def test_predict_says_which_trainer_made_a_checkpoint(runs, tmp_path, capsys):
    box = ["--image", runs["image"], "--head_box", "20,10,60,50", "--device", "cpu"]
    code, line, _ = predict_call(capsys, "--weights", runs["g360"] / "best.pt", *box, "--out", tmp_path / "a")
    assert code == 2 and line.startswith("predict.py: " + OTHER.format(path=runs["g360"] / "best.pt", made=G360_NAME,
                                                                       wanted=MAIN_NAME)), line
    assert "predict.py reads it as --gaze360_weights" in line
    code, line, _ = predict_call(capsys, "--weights", runs["main"] / "last.pt", "--gaze360_weights",
                                 runs["main"] / "last.pt", *box, "--out", tmp_path / "b")
    assert code == 2 and line.startswith("predict.py: " + OTHER.format(path=runs["main"] / "last.pt", made=MAIN_NAME,
                                                                       wanted=G360_NAME)), line
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_a_torn_gaze360_checkpoint_is_one_line_wherever_it_is_read(runs, tmp_path, capsys):
    torn = tmp_path / "torn.pt"
    torn.write_bytes((runs["g360"] / "best.pt").read_bytes()[:3000])
    says = "{path}: cannot be loaded: the file is truncated, corrupt or not a torch checkpoint"
    for option in ("--eval_weights", "--init_weights"):
        code, line, err = call(capsys, "gaze360_main.py", runs, tmp_path, "run", option, str(torn))
        assert code == 2 and line.startswith("error: " + says.format(path=torn)), line
        assert "Traceback" not in err
    folder = copy(runs, "g360", tmp_path, "resumed")
    (folder / "last.pt").write_bytes((folder / "last.pt").read_bytes()[:3000])
    before = snapshot(folder)
    code, line, _ = call(capsys, "gaze360_main.py", runs, tmp_path, "resumed", "--epochs", "2")
    assert code == 2 and line.startswith("error: " + says.format(path=folder / "last.pt")), line
    assert snapshot(folder) == before
    code, line, _ = predict_call(capsys, "--weights", runs["main"] / "last.pt", "--gaze360_weights", torn, "--image",
                                 runs["image"], "--head_box", "20,10,60,50", "--device", "cpu", "--out", tmp_path / "p")
    assert code == 2 and line.startswith("predict.py: error: " + says.format(path=torn)), line


# --- a full disk: what the message says is on disk is what is on disk ------------------------------------------------

@pytest.mark.parametrize("trainer", sorted(TRAINERS))
def test_a_full_disk_says_what_is_really_on_disk(runs, tmp_path, capsys, monkeypatch, trainer):
    fill_disk_after(monkeypatch, 2_000)
    code, line, _ = call(capsys, trainer, runs, tmp_path, "fresh", "--epochs", "1")
    assert code == 1, line
    assert re.match(rf"error: cannot write {re.escape(str(tmp_path / 'fresh' / 'last.pt'))}: no space left on the "
                    r"device \(or the disk quota is used up\); there is no earlier last\.pt in .*fresh, nor any other "
                    r"checkpoint: nothing to resume from this run yet", line), line
    assert not list((tmp_path / "fresh").glob("*.pt")) and not list((tmp_path / "fresh").glob(".*.tmp"))
    folder = copy(runs, "main" if trainer == "main.py" else "g360", tmp_path, "extended")
    last = (folder / "last.pt").read_bytes()
    code, line, _ = call(capsys, trainer, runs, tmp_path, "extended", "--epochs", "2")
    assert code == 1 and re.match(rf"error: cannot write {re.escape(str(folder / 'last.pt'))}: no space left on the "
                                  r"device \(or the disk quota is used up\); the previous last\.pt \(written "
                                  r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\) is intact: free some space and run the same "
                                  r"command again to resume from it", line), line
    assert (folder / "last.pt").read_bytes() == last
