"""feature_cache: a run that reads the frozen encoder's tokens from the cache has the same losses and ends with the
same weights as a run that computes them; the cache is keyed by image and flip, and refuses a folder written by
another encoder."""
import json

import pytest
import torch

from engine.checkpoint import load_checkpoint
from engine.config import parse_command_line
from engine.train import run
from models.build import get_model
from models.feature_cache import MANIFEST, FeatureCache
from tests.test_timm_backbone import BACKBONE, TIMM_TINY, timm_config
from tests.tiny_runs import make_tiny_dataset


def losses(run_dir):
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [(r["step"], r["loss"], r["loss_diffusion"], r["loss_inout"]) for r in records if r.get("type") == "train"]


def test_cached_tokens_give_the_same_losses_and_weights(tmp_path):
    dataset = make_tiny_dataset(tmp_path / "data", n_train_images=4, n_test_images=1)
    cache = tmp_path / "cache"

    def train(tag, *flags):
        config, _ = parse_command_line([*TIMM_TINY, *BACKBONE, "--source_dataset_dir", str(dataset), "--output_dir",
                                        str(tmp_path), "--tag", tag, "--epochs", "3", "--train_augmentations",
                                        "jitter", "flip", *flags])
        run(config)
        return losses(tmp_path / tag), load_checkpoint(tmp_path / tag / "last.pt")["model"]

    direct_losses, direct_weights = train("direct")
    cached_losses, cached_weights = train("cached", "--feature_cache", str(cache))
    assert len(direct_losses) >= 3 and cached_losses == direct_losses
    for name, tensor in direct_weights.items():
        assert torch.equal(tensor, cached_weights[name]), name
    entries = list(cache.glob("*/*.pt"))
    assert json.loads((cache / MANIFEST).read_text())["encoder"] == "vit_small_patch14_reg4_dinov2"
    # one entry per (image, flip): every image was seen, some of them flipped
    n_images = len(list((dataset / "train").rglob("*.jpg")))
    assert n_images < len(entries) <= 2 * n_images


def test_entries_are_keyed_by_image_and_flip_and_read_back(tmp_path):
    model = get_model(timm_config(freeze_scene=True)).eval()
    backbone = model.gaze_backbone
    cache = FeatureCache(tmp_path, backbone, str(tmp_path), 56)
    image = torch.randn(3, 3, 56, 56)
    paths, flips = ["a.jpg", "a.jpg", "b.jpg"], torch.tensor([False, True, False])
    first, _ = cache.scene_tokens(backbone, image, paths, flips)
    assert (cache.hits, cache.misses) == (0, 3) and len(list(tmp_path.glob("*/*.pt"))) == 3
    torch.testing.assert_close(first, backbone.encode_scene(image)[0], rtol=0, atol=0)
    again, _ = cache.scene_tokens(backbone, torch.zeros_like(image), paths, flips)  # read, not recomputed
    assert (cache.hits, cache.misses) == (3, 3) and torch.equal(again, first)


def test_cache_refuses_another_encoder_and_a_trained_one(tmp_path):
    FeatureCache(tmp_path, get_model(timm_config(freeze_scene=True, seed=1)).gaze_backbone, "data", 56)
    torch.manual_seed(123)
    other = get_model(timm_config(freeze_scene=True)).gaze_backbone
    with pytest.raises(ValueError, match="fingerprint"):
        FeatureCache(tmp_path, other, "data", 56)
    with pytest.raises(ValueError, match="freeze_scene is off"):
        FeatureCache(tmp_path / "new", get_model(timm_config()).gaze_backbone, "data", 56)


def test_train_augmentations_switch_steps_off_and_keep_the_draws(tmp_path):
    from datasets.gazefollow import GazeFollow

    root = make_tiny_dataset(tmp_path / "data", n_train_images=3, n_test_images=1)
    full = GazeFollow(root, "train", input_size=32, output_size=16, seed=4)
    plain = GazeFollow(root, "train", input_size=32, output_size=16, seed=4, augment=False)
    flip_only = GazeFollow(root, "train", input_size=32, output_size=16, seed=4)
    flip_only.set_augmentations(["flip"])
    flipped = 0
    for index in range(len(full)):
        sample = flip_only[(1, index)]
        assert sample["flip"] == full[(1, index)]["flip"]  # the same draw decides the flip
        reference = plain[index]["image"].flip(-1) if sample["flip"] else plain[index]["image"]
        torch.testing.assert_close(sample["image"], reference)  # no crop, no colour change
        flipped += int(sample["flip"])
    assert 0 < flipped < len(full)
    with pytest.raises(ValueError, match="unknown augmentation steps"):
        flip_only.set_augmentations(["rotate"])
