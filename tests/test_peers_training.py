"""The peers' parts train: `gaze_backbone gazelle` (Gaze-LLE's frozen DINOv2 + projection + head token) under this
project's diffusion decoder on the synthetic data, its DINOv2 weights from a hub-layout file, the frozen encoder's
features cached; the Gaze-LLE decoder learns a target heatmap with Gaze-LLE's loss; the Chong spatio-temporal model
trains through its ConvLSTM across a chunk boundary."""
import json

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.config import parse_command_line
from engine.train import run
from models.chong import ChongSpatioTemporal
from models.dinov2 import DinoV2Encoder
from models.gazelle import GazeLLE, GazeLLEBackbone, GazeLLEDecoder
from tests import peers_recipe as recipe
from tests.test_timm_backbone import TIMM_TINY
from tests.tiny_runs import make_tiny_dataset


def dinov2_small_file(path):
    with torch.device("meta"):
        layout = [(key, tuple(value.shape)) for key, value in DinoV2Encoder("vits14", 56).state_dict().items()]
    torch.save(recipe.state_dict([*layout, ("mask_token", (1, 384))]), path)
    return path


def test_gazelle_backbone_trains_with_the_diffusion_decoder_and_the_feature_cache(tmp_path, capsys):
    dataset = make_tiny_dataset(tmp_path / "data")
    weights = dinov2_small_file(tmp_path / "dinov2_vits14_pretrain.pth")

    def config(*flags):
        return parse_command_line([*TIMM_TINY, "--source_dataset_dir", str(dataset), "--output_dir",
                                   str(tmp_path / "runs"), "--tag", "gazelle", *flags])[0]

    run(config("--gaze_backbone", "gazelle", "--timm_model", "dinov2_vits14", "--backbone_weights", str(weights),
               "--freeze_scene", "--feature_cache", str(tmp_path / "cache"), "--train_augmentations", "jitter", "flip",
               "--epochs", "1"))
    checkpoint = load_checkpoint(tmp_path / "runs" / "gazelle" / "last.pt")
    assert checkpoint["config"]["gaze_backbone"] == "gazelle"
    state = checkpoint["model"]
    # The frozen encoder is DINOv2's file, unchanged by training.
    assert torch.equal(state["gaze_backbone.scene_backbone.blocks.3.mlp.fc1.weight"],
                       recipe.weight("blocks.3.mlp.fc1.weight", (1536, 384)))
    assert "gaze_backbone.head_token.weight" in state and "unet.out.2.weight" in state
    assert any((tmp_path / "cache").rglob("*.pt")), "the frozen encoder's features were cached"
    trained = json.loads((tmp_path / "runs" / "gazelle" / "metrics.json").read_text())
    evaluated = run(config("--eval_weights", str(tmp_path / "runs" / "gazelle" / "last.pt"), "--tag", "eval"))
    for key in ("auc", "min_l2", "avg_l2"):
        assert evaluated[key] == pytest.approx(trained[key], abs=1e-6), key


def test_gazelle_decoder_learns_a_heatmap_with_gazelles_loss(single_thread):
    """Gaze-LLE's objective on GazeFollow: binary cross-entropy between its sigmoid heatmap and the target map; the
    encoder frozen (no gradient reaches it)."""
    torch.manual_seed(0)
    backbone = GazeLLEBackbone("vits14", 56, dim=32)
    backbone.scene_backbone.requires_grad_(False)
    model = GazeLLE(backbone, GazeLLEDecoder(32, num_layers=1, inout=True))
    images, head_map = recipe.image_batch(11, 2, 56), torch.zeros(2, 4, 4)
    head_map[0, :2, :2] = head_map[1, 2:, 2:] = 1
    target = torch.zeros(2, 8, 8)
    target[0, 6, 1] = target[1, 1, 6] = 1
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-2)
    losses = []
    for _ in range(30):
        heatmap, inout = model(images, head_map)
        loss = torch.nn.functional.binary_cross_entropy(heatmap, target) + \
            torch.nn.functional.binary_cross_entropy(inout, torch.tensor([1.0, 0.0]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert all(p.grad is None for p in backbone.scene_backbone.parameters())
    assert losses[-1] < 0.5 * losses[0]
    assert heatmap[0].argmax().item() == 6 * 8 + 1 and heatmap[1].argmax().item() == 1 * 8 + 6


def test_chong_spatiotemporal_model_trains_through_the_convlstm():
    """A training step on one track in two chunks, the hidden state detached between them as Chong's training
    script does: gradients reach the ConvLSTM and the decoder; dropout between the ConvLSTM layers is on."""
    torch.manual_seed(0)
    model = ChongSpatioTemporal(num_lstm_layers=2).train()
    track = recipe.chong_tracks()[1]
    hidden = None
    for chunk in (slice(0, 3), slice(3, 4)):
        frames = {key: value[chunk] for key, value in track.items()}
        if hidden is not None:
            hidden = (hidden[0].detach(), hidden[1].detach())
        length = frames["image"].shape[0]
        heatmap, inout, hidden = model(frames["image"], frames["head_channel"], frames["face"], hidden,
                                       [1] * length)
        (heatmap.square().mean() + inout.square().mean()).backward()
    assert model.convlstm.weight_hh_l1.grad.abs().sum() > 0 and model.heatmap_decoder.conv4.weight.grad is not None
    assert hidden[0].shape == (2, 1, 512, 7, 7)
