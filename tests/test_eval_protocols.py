"""Each dataset's evaluation protocol, cross-dataset evaluation, the per-sample CSV, figures and parallel metrics.

The end-to-end test trains a tiny model for one epoch on a synthetic VideoAttentionTarget dataset, then evaluates the
checkpoint on a synthetic GOO dataset with --eval_weights (in-process, to stay fast).
"""
import csv
import json

import numpy as np
import pytest
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from datasets.goo import GOO
from datasets.synthetic_formats import generate_goo, generate_videoattentiontarget, write_depth_maps
from datasets.videoattentiontarget import VideoAttentionTarget
from diffusion import create_gaussian_diffusion, sample_heatmaps
from diffusion.sampling import sample_heatmaps_progressive
from engine.config import load_config
from engine.train import run
from eval import metrics
from eval.evaluate import PROTOCOLS, sample_metrics
from eval.figures import ranked_groups

TINY = dict(
    device="cpu", no_wandb=True, num_workers=0, seed=3, input_size=64, output_size=32, batch_size=4,
    list_resnet_scene_layers=[1] * 5, list_resnet_face_layers=[1] * 5, resnet_scene_inplanes=8,
    resnet_face_inplanes=8, unet_context_vector=128, unet_inplanes=8, list_unet_inplanes_multipliers=[1, 2],
    list_unet_attention_levels=[2], train_time_steps=20, sample_time_steps=3, print_every=1, evaluate_every=100,
    save_every=1, debug_maps_per_group=2, debug_trajectories=1,
)


def test_goo_grid_auc_scores_a_one_hot_cell_of_a_5x5_grid():
    heatmap = np.zeros((64, 64))
    heatmap[40:52, 13:25] = 1.0  # inside the block of cell (row 3, col 1) of an adaptive 5 x 5 pooling
    assert metrics.goo_grid_auc(heatmap, (0.3, 0.7)) == 1.0  # int(0.3 * 5) = 1, int(0.7 * 5) = 3
    assert metrics.goo_grid_auc(np.ones((64, 64)), (0.3, 0.7)) == 0.5
    # The oracle: sklearn on the pooled map against the one-hot grid.
    rng = np.random.default_rng(0)
    heatmap = rng.random((64, 64))
    pooled = torch.nn.functional.adaptive_avg_pool2d(torch.from_numpy(heatmap)[None, None], 5)[0, 0].numpy()
    target = np.zeros((5, 5))
    target[4, 2] = 1  # x = 0.5 -> col 2, y = 1.0 -> clamped to row 4
    assert metrics.goo_grid_auc(heatmap, (0.5, 1.0)) == pytest.approx(roc_auc_score(target.ravel(), pooled.ravel()))


def test_vat_protocol_scores_in_frame_samples_only():
    heatmap = np.random.default_rng(1).random((64, 64))
    points = np.full((20, 2), -1.0)
    points[0] = (0.25, 0.75)
    assert sample_metrics("vat", heatmap, points, np.array([0.5, 0.5]), (320, 180), 0.0) == {}
    values = sample_metrics("vat", heatmap, points, np.array([0.5, 0.5]), (320, 180), 1.0)
    assert values == {"auc": metrics.vat_auc(heatmap, (0.25, 0.75)), "l2": metrics.vat_l2(heatmap, (0.25, 0.75)),
                      "heatmap_ap": metrics.heatmap_ap(heatmap, (0.25, 0.75))}
    goo = sample_metrics("goo", heatmap, points, np.array([0.5, 0.5]), (320, 180), 1.0)
    assert set(goo) == set(PROTOCOLS["goo"]) and goo["goo_grid_auc"] == metrics.goo_grid_auc(heatmap, (0.25, 0.75))
    assert goo["auc"] == metrics.gazefollow_auc(heatmap, points, (320, 180))


def test_progressive_sampling_ends_where_sample_heatmaps_ends():
    diffusion = create_gaussian_diffusion(steps=20, predict_xstart=True, timestep_respacing="4", clip_range=3.0)

    def model_fn(x, t, context):
        return torch.tanh(x * context + t[:, None, None, None] / 20)

    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    kwargs = {"context": torch.full((2, 1, 1, 1), 0.5)}
    final = sample_heatmaps(diffusion, model_fn, kwargs, noise.shape, clip_denoised=False, noise=noise.clone())
    steps = list(sample_heatmaps_progressive(diffusion, model_fn, kwargs, noise.shape, clip_denoised=False,
                                             noise=noise.clone()))
    assert [out["step"] for out in steps] == [3, 2, 1, 0]
    assert torch.equal(steps[-1]["sample"], final)
    assert steps[0]["pred_xstart"].shape == noise.shape


def test_ranked_groups_pick_best_median_and_worst_among_scored_rows():
    rows = [{"index": i, "l2": value} for i, value in enumerate([0.5, "", 0.1, 0.9, 0.3, 0.7])]
    groups = ranked_groups(rows, "l2", 2)
    assert [r["index"] for r in groups["best"]] == [2, 4]
    assert [r["index"] for r in groups["median"]] == [4, 0]
    assert [r["index"] for r in groups["worst"]] == [3, 5]
    assert ranked_groups([{"index": 0, "l2": ""}], "l2", 2) == {}


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("protocols")
    generate_videoattentiontarget(root / "vat", n_train_clips=1, n_test_clips=1, frames_per_clip=4, seed=11)
    generate_goo(root / "goo", "real", n_train_images=2, n_test_images=3, seed=12)
    generate_goo(root / "goosynth", "synth", n_train_images=4, n_test_images=1, seed=13)
    write_depth_maps(root / "vat", "videoattentiontarget")
    write_depth_maps(root / "goosynth", "goo")
    return root


def read_rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_vat_training_run_then_cross_dataset_evaluation_on_goo(datasets, tmp_path):
    vat = datasets / "vat"
    summary = run(load_config([], {**TINY, "source_dataset": "videoattentiontarget", "source_dataset_dir": str(vat),
                                   "epochs": 1, "output_dir": str(tmp_path), "tag": "vat", "Debugging_maps": True}))
    test_set = VideoAttentionTarget(vat, "test")
    written = json.loads((tmp_path / "vat" / "metrics.json").read_text())
    assert written["protocol"] == "vat" and "VideoAttentionTarget protocol" in written["protocol_description"]
    assert written["n_samples"] == len(test_set) and written["n_in_frame"] == int(test_set.inout_labels().sum())
    rows = read_rows(tmp_path / "vat" / "predictions.csv")
    assert len(rows) == len(test_set) and {"auc", "l2", "inout_score", "inout_label"} <= set(rows[0])
    inside = [row for row in rows if row["inout_label"] == "1.0"]
    assert all(row["auc"] == "" and row["l2"] == "" for row in rows if row["inout_label"] == "0.0")
    assert len(inside) < len(rows)  # the synthetic clip has out-of-frame frames
    assert written["auc"] == pytest.approx(np.mean([float(row["auc"]) for row in inside]))
    assert written["l2"] == pytest.approx(np.mean([float(row["l2"]) for row in inside]))
    assert written["inout_ap"] == pytest.approx(average_precision_score(
        [float(row["inout_label"]) for row in rows], [float(row["inout_score"]) for row in rows]))
    assert summary["auc"] == written["auc"]
    figures = tmp_path / "vat" / "figures"
    assert {"best.png", "median.png", "worst.png", "trajectory_0.png"} <= {p.name for p in figures.iterdir()}

    # Cross-dataset: the VAT checkpoint evaluated on GOO with its own protocol; figures always with eval_weights.
    cross = {**TINY, "source_dataset": "videoattentiontarget", "source_dataset_dir": str(vat),
             "eval_dataset": "goo", "eval_dataset_dir": str(datasets / "goo"), "output_dir": str(tmp_path),
             "eval_weights": str(tmp_path / "vat" / "last.pt")}
    # Metrics computed in worker processes (eval_metric_workers) while the model predicts.
    on_goo = run(load_config([], {**cross, "tag": "goo", "eval_metric_workers": 2}))
    assert on_goo["protocol"] == "goo" and on_goo["n_samples"] == 3 and on_goo["inout_ap"] is None
    assert set(PROTOCOLS["goo"]) <= set(on_goo) and 0.0 <= on_goo["goo_grid_auc"] <= 1.0
    assert (tmp_path / "goo" / "figures" / "worst.png").is_file()
    goo_test = GOO(datasets / "goo", "test")
    rows = read_rows(tmp_path / "goo" / "predictions.csv")
    for row in rows:  # each worker-computed L2 against the argmax point written beside it and GOO's own annotation
        gaze = goo_test.sample_gaze_points(int(row["index"]))[0]
        predicted = np.array([float(row["pred_x"]), float(row["pred_y"])])
        assert float(row["min_l2"]) == pytest.approx(np.linalg.norm(predicted - gaze))
        assert float(row["avg_l2"]) == pytest.approx(np.linalg.norm(predicted - gaze))
    assert on_goo["min_l2"] == pytest.approx(np.mean([float(row["min_l2"]) for row in rows]))


def test_depth_training_on_goo_synth_evaluated_on_vat_in_the_same_run(datasets, tmp_path):
    config = load_config([], {
        **TINY, "source_dataset": "goo", "goo_variant": "synth", "source_dataset_dir": str(datasets / "goosynth"),
        "eval_dataset": "videoattentiontarget", "eval_dataset_dir": str(datasets / "vat"), "depth_flag": True,
        "list_resnet_depth_layers": [1] * 5, "resnet_depth_inplanes": 8, "epochs": 1, "output_dir": str(tmp_path),
        "tag": "depth", "batch_size": 2,
    })
    summary = run(config)
    assert summary["protocol"] == "vat" and summary["n_samples"] == len(VideoAttentionTarget(datasets / "vat", "test"))
    weights = torch.load(tmp_path / "depth" / "last.pt", weights_only=True)["model"]
    assert "gaze_backbone.depth_backbone.conv1.weight" in weights
    assert not (tmp_path / "depth" / "figures").exists()  # figures only with Debugging_maps or eval_weights


def test_the_printed_table_says_how_the_heatmaps_were_sampled_and_which_weights():
    from eval.evaluate import format_table

    keys = PROTOCOLS["gazefollow"]
    summary = {key: 0.5 for key in keys} | {
        "inout_ap": None, "baseline_centre_prior": {key: 0.25 for key in keys}, "protocol": "gazefollow",
        "n_samples": 3, "sampler": "ddim", "sample_steps": 10, "sample_k": 4, "evaluated_weights": "ema"}
    table = format_table(summary)
    assert "ddim with 10 steps, mean of K = 4 samples, ema weights" in table
    assert "mean of K" not in format_table(summary | {"sample_k": 1, "evaluated_weights": "model"})
