"""The heatmap decoder as a choice (heatmap_decoder): a diffusion decoder and a direct decoder train on the same frozen
encoder (a tiny random timm ViT, feature cache on) and evaluate through the same code with the same outputs; a direct
run resumes exactly, evaluates with --eval_weights, predicts, and exports to one ONNX graph equal to PyTorch; the
direct losses and a plug-in decoder with its own in/out head."""
import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch import nn

import eval.evaluate
import predict
from datasets.transforms import model_inputs
from engine.build import build_formulation
from engine.checkpoint import load_checkpoint
from engine.config import ConfigError, load_config, parse_command_line
from engine.train import AMP_DTYPES, autocast_for, run, training_step
from eval.evaluate import predict_batch
from inference.predictor import Predictor
from inference.sources import HeadBox
from models.build import get_model
from models.decoders import HEATMAP_DECODERS, register_decoder
from models.feature_cache import MANIFEST
from optim import build_lr_scheduler, build_optimizer
from pretrained.loading import load_init_weights
from tests.test_end_to_end import TINY as RESNET_TINY
from tests.test_plugins import without
from tests.test_timm_backbone import BACKBONE, TIMM_TINY
from tests.test_training_step import TINY, batch
from tests.tiny_runs import make_tiny_dataset

DIFFUSION_FLAGS = ("--train_time_steps", "--sample_time_steps")
DIRECT = ["--heatmap_decoder", "unet_direct", "--direct_loss_weight", "100"]


def train_records(run_dir) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()
            if json.loads(line).get("type") == "train"]


@pytest.fixture(scope="module")
def encoder_runs(tmp_path_factory):
    """The diffusion decoder (K = 2 samples) and unet_direct, each 2 epochs on one frozen tiny ViT, one cache."""
    root = tmp_path_factory.mktemp("decoders")
    dataset = make_tiny_dataset(root / "data", n_train_images=4, n_test_images=2)
    common = [*without(TIMM_TINY, ("--no_save",) + DIFFUSION_FLAGS), *BACKBONE, "--source_dataset_dir", str(dataset),
              "--output_dir", str(root), "--epochs", "2", "--train_augmentations", "jitter", "flip",
              "--feature_cache", str(root / "cache")]
    called = []
    with pytest.MonkeyPatch.context() as patch:  # both evaluations go through the one evaluation function
        original = eval.evaluate.predict_batch
        patch.setattr(eval.evaluate, "predict_batch",
                      lambda model, formulation, *args: called.append(formulation.name) or
                      original(model, formulation, *args))
        previous = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            summaries = {}
            config, _ = parse_command_line([*common, "--tag", "diffusion", "--train_time_steps", "50",
                                            "--sample_time_steps", "5", "--sample_k", "2"])
            summaries["diffusion"] = run(config)
            entries = sorted(p.name for p in (root / "cache").rglob("*.pt"))
            config, _ = parse_command_line([*common, "--tag", "direct", *DIRECT])
            summaries["direct"] = run(config)
        finally:
            torch.set_num_threads(previous)
    return {"root": root, "dataset": dataset, "summaries": summaries, "called": called, "entries": entries}


def test_diffusion_and_direct_decoders_on_one_frozen_encoder_evaluate_alike(encoder_runs):
    root, summaries = encoder_runs["root"], encoder_runs["summaries"]
    assert set(encoder_runs["called"]) == {"heatmap", "direct"}
    diffusion, direct = (json.loads((root / tag / "metrics.json").read_text()) for tag in ("diffusion", "direct"))
    assert set(diffusion) == set(direct)  # the same fields, so the numbers sit side by side
    assert (diffusion["heatmap_decoder"], diffusion["formulation"], diffusion["sampler"]) == \
        ("diffusion", "heatmap", "ddim")
    assert (direct["heatmap_decoder"], direct["formulation"], direct["diffusion_target"]) == \
        ("unet_direct", "direct", None)
    assert direct["sampler"] is None and direct["sample_steps"] is None and direct["sample_k"] == 1
    assert "one forward pass" in direct["sampling"]
    for key in ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang", "heatmap_ap"):
        assert summaries["direct"][key] is not None and summaries["diffusion"][key] is not None
    assert diffusion["baseline_centre_prior"] == direct["baseline_centre_prior"]  # the same samples and protocol
    assert {p.name for p in (root / "diffusion").iterdir()} - {"ckpt_epoch_2.pt"} == \
        {p.name for p in (root / "direct").iterdir()} - {"ckpt_epoch_2.pt"}
    rows = {}
    for tag in ("diffusion", "direct"):
        with open(root / tag / "predictions.csv") as stream:
            rows[tag] = list(csv.DictReader(stream))
    assert list(rows["diffusion"][0]) == list(rows["direct"][0])
    assert [row["index"] for row in rows["diffusion"]] == [row["index"] for row in rows["direct"]]
    for tag, k in (("diffusion", 2), ("direct", 1)):  # the K sampled points of each person (samples.npz)
        samples = np.load(root / tag / "samples.npz")
        assert samples["points"].shape == (len(rows[tag]), k, 2)
        assert samples["index"].tolist() == [int(row["index"]) for row in rows[tag]]
    np.testing.assert_allclose(np.load(root / "direct" / "samples.npz")["points"][:, 0],
                               [[float(row["pred_x"]), float(row["pred_y"])] for row in rows["direct"]])
    # The direct run trained from the diffusion run's cached tokens (no new entries) and logged its own loss.
    assert sorted(p.name for p in (root / "cache").rglob("*.pt")) == encoder_runs["entries"]
    assert json.loads((root / "cache" / MANIFEST).read_text())["encoder"] == "vit_small_patch14_reg4_dinov2"
    assert all("loss_direct" in r and "loss_diffusion" not in r for r in train_records(root / "direct"))
    assert all("loss_diffusion" in r for r in train_records(root / "diffusion"))
    weights = load_checkpoint(root / "direct" / "last.pt")["model"]
    assert weights["unet.out.2.weight"].abs().sum() > 0  # the zero-initialised output layer was trained
    assert load_checkpoint(root / "direct" / "last.pt")["config"]["heatmap_decoder"] == "unet_direct"


@pytest.mark.usefixtures("single_thread")  # as the training run's evaluation: the same float reductions
def test_eval_weights_of_a_direct_run_evaluates_it_again_and_refuses_sampler_options(encoder_runs):
    root = encoder_runs["root"]
    common = ["--device", "cpu", "--no_wandb", "--num_workers", "0", "--source_dataset_dir",
              str(encoder_runs["dataset"]), "--output_dir", str(root)]
    config, _ = parse_command_line([*common, "--tag", "again", "--eval_weights", str(root / "direct" / "last.pt")])
    summary = run(config)
    trained = encoder_runs["summaries"]["direct"]
    for key in ("auc", "min_l2", "avg_l2", "heatmap_ap"):
        assert summary[key] == pytest.approx(trained[key], abs=1e-6), key
    assert summary["heatmap_decoder"] == "unet_direct"
    figures = summary["figures"]  # drawn by every --eval_weights evaluation; no steps, so no trajectory
    assert {"best.png", "median.png", "worst.png"} <= set(figures["files"]) and figures["trajectory_indices"] == []
    assert not any(name.startswith("trajectory") for name in figures["files"])
    config, _ = parse_command_line([*common, "--tag", "k", "--eval_weights", str(root / "direct" / "last.pt"),
                                    "--sample_k", "4"])
    with pytest.raises(ConfigError, match="'sample_k'.*configures the diffusion decoder.*'heatmap_decoder'"):
        run(config)


@pytest.fixture(scope="module")
def resnet_direct(tmp_path_factory):
    """unet_direct on the end-to-end test's tiny ResNets: 2 epochs straight, and 1 epoch resumed to 2."""
    root = tmp_path_factory.mktemp("direct")
    dataset = make_tiny_dataset(root / "data")
    common = [*without(RESNET_TINY, DIFFUSION_FLAGS), *DIRECT, "--source_dataset_dir", str(dataset), "--output_dir",
              str(root), "--no_save"]
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        straight = run(parse_command_line([*common, "--tag", "straight", "--epochs", "2"])[0])
        run(parse_command_line([*common, "--tag", "resumed", "--epochs", "1"])[0])
        resumed = run(parse_command_line([*common, "--tag", "resumed", "--epochs", "2"])[0])
    finally:
        torch.set_num_threads(previous)
    return {"root": root, "dataset": dataset, "straight": straight, "resumed": resumed}


def test_a_direct_run_resumes_exactly(resnet_direct):
    root = resnet_direct["root"]
    straight, resumed = (load_checkpoint(root / tag / "last.pt") for tag in ("straight", "resumed"))
    assert straight["step"] == resumed["step"] > 0
    for name, tensor in straight["model"].items():
        assert torch.equal(tensor, resumed["model"][name]), name
    assert [r["loss"] for r in train_records(root / "straight")] == [r["loss"] for r in train_records(root / "resumed")]
    assert resnet_direct["straight"]["auc"] == resnet_direct["resumed"]["auc"]


def test_a_direct_checkpoint_predicts_and_exports_one_onnx_graph_equal_to_pytorch(resnet_direct, tmp_path, capsys):
    onnxruntime = pytest.importorskip("onnxruntime")  # noqa: F841
    from inference.onnx_runner import OnnxPredictor, graph_paths
    from pretrained.export import main as export_main

    weights = resnet_direct["root"] / "straight" / "last.pt"
    predictor = Predictor(weights, overrides={"device": "cpu"})
    settings = predictor.settings()
    assert (settings["heatmap_decoder"], settings["formulation"], settings["sampler"]) == ("unet_direct", "direct",
                                                                                           None)
    assert predictor.sampler is None and not predictor.model.generative
    image = Image.open(sorted((resnet_direct["dataset"] / "test2").rglob("*.jpg"))[0]).convert("RGB")
    people = [HeadBox("a", np.array([20.0, 30, 80, 90]), "t"), HeadBox("b", np.array([150.0, 40, 210, 110]), "t")]
    expected = predictor.predict(image, people)
    assert expected[0].heatmap.shape == (32, 32) and not np.allclose(expected[0].heatmap, expected[1].heatmap)
    image_path = sorted((resnet_direct["dataset"] / "test2").rglob("*.jpg"))[0]
    assert predict.main(["--weights", str(weights), "--image", str(image_path), "--head_box", "20,30,80,90",
                         "--out", str(tmp_path / "predict"), "--device", "cpu"]) == 0
    document = json.loads((tmp_path / "predict" / "predictions.json").read_text())
    assert (document["heatmap_decoder"], document["sampler"], document["sample_k"]) == ("unet_direct", None, 1)
    assert predict.main(["--weights", str(weights), "--image", str(image_path), "--head_box", "20,30,80,90",
                         "--out", str(tmp_path / "k"), "--device", "cpu", "--sample_k", "3"]) == 2
    assert "'sample_k'" in capsys.readouterr().err
    stale = tmp_path / "direct.encoder.onnx"
    stale.write_bytes(b"an earlier export of a diffusion decoder")
    assert export_main([str(weights), str(tmp_path / "direct.onnx")]) == 0
    assert (tmp_path / "direct.onnx").is_file() and not any(path.exists() for path in graph_paths(tmp_path /
                                                                                                   "direct.onnx"))
    assert "removed" in capsys.readouterr().out
    runner = OnnxPredictor(tmp_path / "direct.onnx")
    assert runner.direct and runner.config.heatmap_decoder == "unet_direct"
    inputs = [model_inputs(image, person.box, predictor.config.input_size) for person in people]
    heatmaps, inout = runner.predict({key: torch.stack([person[key] for person in inputs])
                                      for key in ("image", "head_mask", "face")})
    for person, heatmap, score in zip(expected, heatmaps, inout):
        assert np.abs(heatmap - person.heatmap).max() <= 1e-5
        assert abs(float(score) - person.inout) <= 1e-5


# --- the direct losses ----------------------------------------------------------------------------------------------

def one_step(config):
    torch.manual_seed(1)
    model = get_model(config)
    optimizer = build_optimizer(*model.parameter_groups(), config)
    scheduler = build_lr_scheduler(optimizer, config, 10)
    scaler = torch.amp.GradScaler("cpu", enabled=AMP_DTYPES[config.amp] is torch.float16)
    device = torch.device("cpu")
    losses = training_step(model, build_formulation(config), batch(), config, device, optimizer, scheduler, scaler,
                           autocast_for(config, device), torch.contiguous_format, step=0)
    return model, {key: float(value) for key, value in losses.items()}


@pytest.mark.usefixtures("single_thread")
def test_direct_losses_at_the_zero_initialised_output():
    """The UNet's last layer starts at zero: unet_direct's first map is 0 (MSE = mean of the target squared) and
    unet_direct_sigmoid's first logits are 0 (BCE = log 2 per cell, whatever the target)."""
    data = batch()
    in_frame = data["heatmap"][data["inout"] > 0.5]
    config = load_config([], {**TINY, "heatmap_decoder": "unet_direct", "direct_loss_weight": 2.0,
                              "train_time_steps": 1000, "sample_time_steps": 50})
    model, losses = one_step(config)
    assert losses["loss_direct"] == pytest.approx(float((in_frame ** 2).mean()), rel=1e-5)
    assert losses["loss"] == pytest.approx(2.0 * losses["loss_direct"] + 100.0 * losses["loss_inout"], rel=1e-5)
    assert "loss_diffusion" not in losses and losses["in_frame"] == 3
    config = load_config([], {**TINY, "heatmap_decoder": "unet_direct_sigmoid", "direct_loss": "bce",
                              "train_time_steps": 1000, "sample_time_steps": 50})
    _, losses = one_step(config)
    assert losses["loss_direct"] == pytest.approx(math.log(2), rel=1e-5)


class OwnInOutDecoder(nn.Module):
    """A sigmoid heatmap from the mean conditioning token, and its own in/out logit (as Gaze-LLE's in/out token)."""

    def __init__(self, config, backbone):
        super().__init__()
        self.side = config.output_size
        self.heatmap = nn.Linear(backbone.context_dim, self.side ** 2)
        self.inout = nn.Linear(backbone.context_dim, 1)

    def forward(self, features):
        token = features["conditioning"].mean(dim=1)
        logits = self.heatmap(token).reshape(-1, 1, self.side, self.side)
        return {"heatmap": torch.sigmoid(logits), "heatmap_logits": logits, "inout_logit": self.inout(token)[:, 0]}


@pytest.mark.usefixtures("single_thread")
def test_a_plugged_in_decoder_with_its_own_inout_head_replaces_the_models():
    register_decoder("own_inout_test", kind="direct", output="sigmoid", own_inout=True)(OwnInOutDecoder)
    try:
        config = load_config([], {**TINY, "heatmap_decoder": "own_inout_test", "direct_loss": "bce",
                                  "train_time_steps": 1000, "sample_time_steps": 50})
        torch.manual_seed(1)
        reference = get_model(config)
        assert reference.inout_head is None and any(name.startswith("heatmap_decoder.") for name in
                                                    reference.state_dict())
        data = batch()
        with torch.no_grad():
            features = reference.encode(data["image"], data["head_mask"], data["face"])
            decoded = reference.heatmap_network(features)
        rows = data["inout"] > 0.5
        expected_bce = F.binary_cross_entropy_with_logits(decoded["heatmap_logits"][rows],
                                                          data["heatmap"][rows].unsqueeze(1))
        expected_inout = F.binary_cross_entropy_with_logits(decoded["inout_logit"], data["inout"])
        model, losses = one_step(config)  # the same seed: the same weights as `reference` before the step
        assert losses["loss_direct"] == pytest.approx(float(expected_bce), rel=1e-5)
        assert losses["loss_inout"] == pytest.approx(float(expected_inout), rel=1e-5)
        prediction = predict_batch(model.eval(), build_formulation(config), config, data, torch.device("cpu"))
        with torch.no_grad():
            own = model.heatmap_network(model.encode(data["image"], data["head_mask"], data["face"]))
        np.testing.assert_allclose(prediction.inout, torch.sigmoid(own["inout_logit"]).numpy(), rtol=1e-6)
        np.testing.assert_allclose(prediction.heatmaps, own["heatmap"][:, 0].numpy(), rtol=1e-6)
        # Its checkpoint keys are read back by the project's naming (as predict.py and --eval_weights read them).
        report = load_init_weights(get_model(config), model.state_dict(), scheme="auto")
        assert report.scheme == "project" and not report.missing and not report.unmatched and report.loaded
    finally:
        HEATMAP_DECODERS.pop("own_inout_test", None)
