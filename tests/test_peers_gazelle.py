"""Gaze-LLE: this project's model, built from files in Gaze-LLE's and DINOv2's own layouts, gives fkryan/gazelle's
outputs (tests/fixtures/peers/README.md says how they were computed by running gazelle's code).

All four released variants: gazelle_dinov2_vitb14[_inout] on DINOv2 weights in the torch.hub layout
(`dinov2_vitb14_pretrain.pth`), gazelle_dinov2_vitl14[_inout] on timm's layout (`model.safetensors` of
`vit_large_patch14_dinov2.lvd142m`); two images, several people per image, one person without a head box.
"""
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from datasets.peer_transforms import gazelle_head_maps
from models.gazelle import GazeLLE, positional_encoding
from pretrained.peer_files import build_gazelle, read_peer_file
from tests import peers_recipe as recipe

FIXTURE = Path(__file__).parent / "fixtures" / "peers" / "gazelle.pt"
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def reference():
    return torch.load(FIXTURE, weights_only=True)


def release_state(reference, variant: str) -> dict[str, torch.Tensor]:
    """A Gaze-LLE release file's content: the recipe in its layout, `pos_embed` as Gaze-LLE computes it."""
    return recipe.state_dict(reference["layouts"][variant], kept={"pos_embed": positional_encoding(256, 32, 32)})


def write_files(reference, folder: Path, architecture: str, dinov2_layout: str) -> dict[str, Path]:
    files = {}
    for variant in (f"gazelle_dinov2_{architecture}_inout", f"gazelle_dinov2_{architecture}"):
        files[variant] = folder / f"{variant}.pt"
        torch.save(release_state(reference, variant), files[variant])
    dinov2 = recipe.state_dict(reference["layouts"][f"dinov2_{architecture}"])
    if dinov2_layout == "hub":
        files["dinov2"] = folder / f"dinov2_{architecture}_pretrain.pth"
        torch.save(dinov2, files["dinov2"])
    else:  # timm's file holds the same tensors without the hub's mask token
        del dinov2["mask_token"]
        files["dinov2"] = folder / "model.safetensors"
        save_file(dinov2, str(files["dinov2"]))
    return files


def people(boxes):
    return [box for image in boxes for box in image], [len(image) for image in boxes]


def assert_close(found, expected, what):
    difference = (found - expected).abs().max().item()
    assert difference <= TOLERANCE, f"{what}: differs from gazelle's by {difference:.3g}"


def test_positional_encoding_is_gazelles(reference):
    checks = reference["pos_embed_checks"]
    encoding = positional_encoding(256, 32, 32)
    assert torch.equal(encoding[:, :3, :5], checks["slice"])
    assert encoding.double().sum().item() == pytest.approx(checks["sum"], abs=1e-6)
    assert encoding.double().abs().sum().item() == pytest.approx(checks["abs_sum"], rel=1e-12)


def test_head_maps_are_gazelles(reference):
    """Rounding ties go to the even cell (2.5 -> 2, 3.5 -> 4); no head box: an empty map."""
    for variant, boxes in (("gazelle_dinov2_vitb14", recipe.GAZELLE_BOXES),
                           ("gazelle_dinov2_vitl14", recipe.GAZELLE_BOXES_VITL)):
        assert torch.equal(gazelle_head_maps(people(boxes)[0]), reference["outputs"][variant]["head_maps"])
    column = gazelle_head_maps([(2.5 / 32, 3.5 / 32, 0.5, 0.5)])[0, :, 2].tolist()
    assert column[:4] == [0.0] * 4 and column[4:16] == [1.0] * 12 and column[16:] == [0.0] * 16


def test_vitb14_variants_equal_gazelle(reference, tmp_path):
    files = write_files(reference, tmp_path, "vitb14", "hub")
    boxes, counts = people(recipe.GAZELLE_BOXES)
    images = recipe.image_batch(recipe.GAZELLE_IMAGE_SEED, len(counts), 448)
    head_map = gazelle_head_maps(boxes)
    model = build_gazelle(files["gazelle_dinov2_vitb14_inout"], files["dinov2"])
    assert isinstance(model, GazeLLE) and model.variant == "gazelle_dinov2_vitb14_inout" and not model.training
    expected = reference["outputs"]["gazelle_dinov2_vitb14_inout"]
    encoded = []
    hook = model.gaze_backbone.scene_backbone.register_forward_hook(lambda module, args, out: encoded.append(out))
    with torch.no_grad():
        heatmap, inout = model(images, head_map, counts)
    hook.remove()
    (features,) = encoded  # each image encoded once
    projection = recipe.projection(8001, features.shape[1])
    assert_close(torch.einsum("bchw,co->bohw", features, projection), expected["features_projection"],
                 "DINOv2 ViT-B/14 features")
    assert heatmap.shape == (4, 64, 64) and inout.shape == (4,)
    assert_close(heatmap, expected["heatmap"], "vitb14_inout heatmaps")
    assert_close(inout, expected["inout"], "vitb14_inout in/out")
    # The GazeFollow model on the same (shared) encoder, whose features it is given: no in/out head.
    plain = build_gazelle(files["gazelle_dinov2_vitb14"], encoder=model.gaze_backbone.scene_backbone)
    assert plain.variant == "gazelle_dinov2_vitb14" and plain.heatmap_decoder.inout_head is None
    scene_tokens = (features.repeat_interleave(torch.tensor(counts), dim=0), None)  # one image per person
    with torch.no_grad():
        outputs = plain.heatmap_decoder(plain.gaze_backbone(None, head_map, scene_tokens=scene_tokens))
    heatmap = outputs["heatmap"][:, 0]
    assert "inout_logit" not in outputs
    assert torch.equal(torch.sigmoid(outputs["heatmap_logits"]), outputs["heatmap"])
    assert_close(heatmap, reference["outputs"]["gazelle_dinov2_vitb14"]["heatmap"], "vitb14 heatmaps")


def test_vitl14_variants_equal_gazelle_with_timm_weights(reference, tmp_path):
    """The timm layout; the second variant reuses the first's scene encoding (one image for both people, passed as
    `scene_tokens`, the feature cache's path)."""
    files = write_files(reference, tmp_path, "vitl14", "timm")
    assert read_peer_file(files["dinov2"]).name == "dinov2_vitl14 (timm layout)"
    boxes, counts = people(recipe.GAZELLE_BOXES_VITL)
    images = recipe.image_batch(recipe.GAZELLE_IMAGE_SEED, len(counts), 448)
    head_map = gazelle_head_maps(boxes)
    model = build_gazelle(files["gazelle_dinov2_vitl14_inout"], files["dinov2"])
    expected = reference["outputs"]["gazelle_dinov2_vitl14_inout"]
    with torch.no_grad():
        scene_tokens = model.gaze_backbone.encode_scene(images)
        features = model.gaze_backbone(None, head_map, scene_tokens=scene_tokens)
        outputs = model.heatmap_decoder(features)
        heatmap, inout_logit = outputs["heatmap"], outputs["inout_logit"]
    projection = recipe.projection(8001, scene_tokens[0].shape[1])
    assert_close(torch.einsum("bchw,co->bohw", scene_tokens[0], projection), expected["features_projection"],
                 "DINOv2 ViT-L/14 features")
    assert_close(heatmap[:, 0], expected["heatmap"], "vitl14_inout heatmaps")
    assert_close(torch.sigmoid(inout_logit), expected["inout"], "vitl14_inout in/out")
    plain = build_gazelle(files["gazelle_dinov2_vitl14"], encoder=model.gaze_backbone.scene_backbone)
    with torch.no_grad():
        features = plain.gaze_backbone(None, head_map, scene_tokens=scene_tokens)
        outputs = plain.heatmap_decoder(features)
    heatmap = outputs["heatmap"]
    assert "inout_logit" not in outputs
    assert_close(heatmap[:, 0], reference["outputs"]["gazelle_dinov2_vitl14"]["heatmap"], "vitl14 heatmaps")
