"""Gaze360 / RT-GENE trainer end to end on tiny synthetic data: train, metrics.json and per-sample CSV, resume
equality, evaluate-only with both analyses, the RT-GENE 3-fold command, and the command line (same rules as main.py)."""
import csv
import json
import math
import subprocess
import sys

import numpy as np
import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.config import ConfigError, load_config
from gaze360.data import read_split_file, yaw_pitch_to_gaze
from gaze360.options import GAZE360
from gaze360.rtgene import fold_subjects, read_labels
from gaze360.synthetic import render_head, write_gaze360, write_rtgene
from gaze360.train import run
from gaze360_main import main
from tests.conftest import ROOT

TINY = {"device": "cpu", "no_wandb": True, "input_size": 24, "num_frames": 3, "crop_sizes": [24, 16], "frame_crops": "all",
        "magnification_deltas": [0, 4, 8], "batch_size": 4, "num_workers": 0, "backbone_layers": [1, 1],
        "backbone_inplanes": 4, "backbone_fc": 0, "feature_size": 8, "lstm_layers": 1, "epochs": 2, "lr": 1e-3,
        "print_every": 1, "save_every": 1}


@pytest.fixture(autouse=True)
def _threads(single_thread):
    yield


@pytest.fixture(scope="module")
def gaze360_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("gaze360")
    write_gaze360(root, seed=3, tracks={"train": 5, "validation": 2, "test": 2}, frames_per_track=8, sizes=(20, 28))
    return root


def _config(root, tmp_path, **changes):
    return load_config([], {**TINY, "dataset_dir": str(root), "output_dir": str(tmp_path), **changes}, GAZE360)


def test_synthetic_gaze360_is_seeded_and_in_the_split_format(tmp_path, gaze360_root):
    write_gaze360(tmp_path, seed=3, tracks={"train": 5, "validation": 2, "test": 2}, frames_per_track=8, sizes=(20, 28))
    for split in ("train", "validation", "test"):
        assert (tmp_path / f"{split}.txt").read_bytes() == (gaze360_root / f"{split}.txt").read_bytes()
    rows = read_split_file(gaze360_root / "train.txt")
    assert len(rows.paths) == 5 * 2  # 8-frame tracks: frames 3 and 4 have 3 frames of context on both sides
    assert (rows.gaze[:, 2] > 0).any() or (rows.gaze[:, 2] <= 0).all()
    # a front view shows eye whites at the head centre region; a back view shows no skin at all
    background = np.zeros((48, 48, 3), np.float32)
    front = np.asarray(render_head(48, np.array([0.0, 0, -1]), np.array([0.0, 0, -1]), 20, (24, 24), background))
    back = np.asarray(render_head(48, np.array([0.0, 0, 1]), np.array([0.0, 0, 1]), 20, (24, 24), background))
    assert (front.min(axis=2) > 200).sum() > 10 and (back.min(axis=2) > 200).sum() == 0


def test_train_writes_metrics_csv_and_checkpoints_and_resume_is_exact(tmp_path, gaze360_root):
    straight = run(_config(gaze360_root, tmp_path, tag="straight"))
    run_dir = tmp_path / "straight"
    for name in ("last.pt", "best.pt", "ckpt_epoch_1.pt", "config.yaml", "metrics.jsonl", "metrics.json",
                 "predictions_test.csv", "predictions_validation.csv"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    test = metrics["test"]["model"]
    assert test["all_360_count"] == 4 and test["front_180_count"] + test["back_count"] == 4
    rows = list(csv.DictReader(open(run_dir / "predictions_test.csv")))
    assert len(rows) == 4
    errors = [float(row["error_deg"]) for row in rows]
    assert np.mean(errors) == pytest.approx(test["all_360_deg"], abs=1e-3)
    # the CSV's own angles reproduce its error column
    for row in rows:
        label = yaw_pitch_to_gaze(np.radians([float(row["yaw_deg"]), float(row["pitch_deg"])]))
        prediction = yaw_pitch_to_gaze(np.radians([float(row["pred_yaw_deg"]), float(row["pred_pitch_deg"])]))
        assert math.degrees(math.acos(np.clip(label @ prediction, -1, 1))) == pytest.approx(
            float(row["error_deg"]), abs=0.01)
    assert metrics["best"]["epoch"] in (1, 2) and straight["test"]["model"]["all_360_deg"] == test["all_360_deg"]

    run(_config(gaze360_root, tmp_path, tag="resumed", epochs=1))
    run(_config(gaze360_root, tmp_path, tag="resumed", epochs=2))
    a, b = load_checkpoint(run_dir / "last.pt"), load_checkpoint(tmp_path / "resumed" / "last.pt")
    assert a["step"] == b["step"] == 4
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key


def test_evaluate_only_and_analyses(tmp_path, gaze360_root):
    run(_config(gaze360_root, tmp_path, tag="trained", epochs=1))
    weights = str(tmp_path / "trained" / "best.pt")
    run(_config(gaze360_root, tmp_path, tag="sweep", eval_weights=weights, analysis="magnification"))
    sweep = list(csv.DictReader(open(tmp_path / "sweep" / "magnification.csv")))
    assert [(int(r["delta"]), int(r["crop"])) for r in sweep] == [(0, 24), (4, 20), (8, 16)]
    assert (tmp_path / "sweep" / "magnification.png").stat().st_size > 1000
    evaluated = json.loads((tmp_path / "sweep" / "metrics.json").read_text())
    assert float(sweep[0]["all_360_deg"]) == pytest.approx(evaluated["test"]["model"]["all_360_deg"], abs=1e-4)
    run(_config(gaze360_root, tmp_path, tag="oracle", eval_weights=weights, analysis="oracle"))
    oracle = {r["selection"]: float(r["all_360_deg"]) for r in csv.DictReader(open(tmp_path / "oracle" / "oracle.csv"))}
    singles = [oracle[f"crop {c}"] for c in (24, 20, 16)]
    assert oracle["random crop"] == pytest.approx(np.mean(singles), abs=1e-6)
    assert oracle["oracle (best crop per sample)"] <= min(singles) + 1e-9
    assert (tmp_path / "oracle" / "oracle.png").is_file()


def test_missing_frame_is_an_error_or_a_counted_skip(tmp_path):
    root = tmp_path / "data"
    write_gaze360(root, seed=1, tracks={"train": 2, "validation": 2, "test": 1}, frames_per_track=7, sizes=(20, 20))
    path = read_split_file(root / "validation.txt").paths[0]
    (root / "imgs" / path).unlink()
    with pytest.raises(FileNotFoundError, match=f"missing frame: .*{path}"):
        run(_config(root, tmp_path, tag="strict", epochs=1, num_frames=1, crop_sizes=[24], temporal="none"))
    metrics = run(_config(root, tmp_path, tag="lenient", epochs=1, num_frames=1, crop_sizes=[24], temporal="none",
                          missing_frames="skip"))
    assert metrics["validation"]["skipped_samples"] == 1 and metrics["validation"]["model"]["all_360_count"] == 1
    (root / "imgs" / read_split_file(root / "validation.txt").paths[1]).unlink()
    with pytest.raises(ValueError, match="no samples: 2 listed, 2 skipped for missing frames"):
        run(_config(root, tmp_path, tag="lenient", epochs=1, num_frames=1, crop_sizes=[24], temporal="none",
                    missing_frames="skip"))


def test_rtgene_labels_folds_and_the_three_fold_command(tmp_path):
    root = tmp_path / "rtgene"
    write_rtgene(root, seed=0, images_per_subject=2, size=24)
    indices, head, gaze = read_labels(root / "s003_glasses" / "label_combined.txt")
    assert indices == [1, 2] and head.shape == gaze.shape == (2, 2)
    assert (root / "s003_glasses" / "original" / "face" / "face_000002_rgb.png").is_file()
    assert fold_subjects(1) == {"train": (3, 4, 7, 9, 5, 6, 11, 12, 13), "validation": (0, 14, 15, 16),
                                "test": (1, 2, 8, 10)}
    (tmp_path / "bad.txt").write_text("1, [0.1, 0.2], [0.3, 0.4], 12.5\n2, [0.1, 0.2], 0.3, 12.6\n")
    with pytest.raises(ValueError, match="bad.txt:2: expected 'idx, \\[head_phi"):
        read_labels(tmp_path / "bad.txt")
    # (also the shared mixed-precision path: bfloat16 autocast on CPU)
    summary = run(_config(root, tmp_path, dataset="rtgene", tag="rt", epochs=1, num_frames=1, rtgene_face="original",
                          amp="bf16"))
    folds = [summary["folds"][f"fold_{k}"]["test"]["model"]["all_360_deg"] for k in (1, 2, 3)]
    assert summary["mean_test"]["all_360_deg"] == pytest.approx(np.mean(folds))
    assert [summary["folds"][f"fold_{k}"]["test"]["model"]["all_360_count"] for k in (1, 2, 3)] == [8, 8, 10]
    assert json.loads((tmp_path / "rt" / "metrics.json").read_text())["mean_test"]["all_360_deg"] == pytest.approx(
        np.mean(folds))


def test_command_line_uses_the_project_configuration_rules(tmp_path, capsys):
    yaml_path = tmp_path / "run.yaml"
    yaml_path.write_text("Model:\n  feature_size: 32\nTraining:\n  lr: 1e-3\n")
    assert main(["--yaml", str(yaml_path), "--lr", "2e-3", "--print_config"]) == 0
    printed = capsys.readouterr().out
    assert "feature_size: 32" in printed and "lr: 0.002" in printed  # flags beat YAML; 1e-3 read as a number
    config = load_config([yaml_path], {}, GAZE360)
    assert config.sources["feature_size"] == f"{yaml_path}:2"
    with pytest.raises(ConfigError, match="run.yaml:2: unknown key 'feature_size'"):
        load_config([yaml_path])  # the tables are separate: main.py's options do not include Gaze360's
    (tmp_path / "bad.yaml").write_text("Model:\n  featur_size: 32\n")
    assert main(["--yaml", str(tmp_path / "bad.yaml")]) == 2
    assert "bad.yaml:2: unknown key 'featur_size' (did you mean 'feature_size'?)" in capsys.readouterr().err
    with pytest.raises(ConfigError, match="'loss' \\(command line\\) = 'sincos_pinball' .* 'target' \\(command line\\)"):
        load_config([], {"loss": "sincos_pinball", "target": "yawpitch"}, GAZE360)
    with pytest.raises(ConfigError, match="temporal.*takes one image per sample"):
        load_config([], {"temporal": "none"}, GAZE360)
    help_text = subprocess.run([sys.executable, str(ROOT / "gaze360_main.py"), "--help"], capture_output=True,
                               text=True, check=True).stdout
    assert "--crop_sizes" in help_text and "--yaml_gaze" not in help_text


def test_the_option_reference_table_is_current():
    from engine.options import OPTIONS_REFERENCE, markdown_table
    from gaze360.options import GROUPS, OPTIONS, OPTIONS_END, OPTIONS_START

    block = (ROOT / OPTIONS_REFERENCE).read_text().split(OPTIONS_START)[1].split(OPTIONS_END)[0]
    assert block == markdown_table(OPTIONS, GROUPS)
