"""The fast sample pipeline (plan from the image size, reduced-size JPEG decoding, resize from a view, one float pass)
against the samples of the pipeline it replaced, stored in tests/fixtures/sample_pipeline (see make_fixture.py there:
written at commit 4c050ef, before the rewrite), and the colour jitter against PIL's enhancers."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

import datasets.base as base
from datasets.gazefollow import GazeFollow
from datasets.transforms import ColourJitter, colour_jitter, sample_augmentation

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "sample_pipeline"
NORMALISED_LEVEL = 1 / (255 * 0.225)  # one uint8 level in ImageNet-normalised units (the largest std)


def stored_samples():
    expected = np.load(FIXTURE / "expected.npz")
    for root in ("data", "large"):
        for split in ("train", "test"):
            dataset = GazeFollow(FIXTURE / root, split, input_size=32, output_size=16, seed=3,
                                 random_sigma=(2.0, 4.0) if split == "train" else None)
            for epoch in (0, 1, 2) if split == "train" else (0,):
                for index in range(len(dataset)):
                    params = None
                    if split == "train":
                        with Image.open(dataset.image_path(str(dataset._paths[index]))) as image:
                            size = image.size
                        rng = np.random.default_rng([3, epoch, index])
                        params = sample_augmentation(rng, size, dataset.pixel_annotation(index, size))
                    stored = {name: expected[f"{root}/{split}/{epoch}/{index}/{name}"].astype(np.float32)
                              for name in ("image", "face", "head_mask", "heatmap", "head_box", "gaze_points",
                                           "eye_point")}
                    yield root, params, stored, dataset[(epoch, index)]


def test_samples_match_the_previous_pipeline_within_the_stated_tolerance(single_thread):
    colour_means = []
    for root, params, stored, sample in stored_samples():
        # Coordinates, targets and masks: equal (the fixture stores float16).
        for name in ("head_mask", "heatmap", "head_box", "gaze_points", "eye_point"):
            np.testing.assert_allclose(sample[name].numpy(), stored[name], atol=1e-3, rtol=0, err_msg=name)
        for name in ("image", "face"):
            difference = np.abs(sample[name].numpy() - stored[name])
            if params is not None and params.colour is not None:
                # Colour jitter is one affine map at input size (datasets.transforms.colour_transform): a few levels.
                assert difference.mean() < 8 * NORMALISED_LEVEL, (root, name, difference.mean())
                colour_means.append(difference.mean())
            elif root == "data":
                # Geometry only, full-size decoding: torch's antialiased resize gives PIL's values within one level.
                assert difference.max() <= 1.01 * NORMALISED_LEVEL + 1e-3, (root, name, difference.max())
            else:
                # A 4x larger image decoded at reduced size (JPEG DCT scaling) then resized: 1-2 levels on average.
                assert difference.mean() < 2 * NORMALISED_LEVEL, (root, name, difference.mean())
    assert len(colour_means) >= 10 and np.median(colour_means) < 3 * NORMALISED_LEVEL


def test_large_jpegs_are_decoded_at_reduced_size_only_when_both_regions_stay_large(monkeypatch, single_thread):
    scales = []
    decode = base._decode

    def recording(opened, reduction, what):
        size = opened.size
        image, scale = decode(opened, reduction, what)
        scales.append((size, tuple(image.shape[1:]), scale))
        return image, scale

    monkeypatch.setattr(base, "_decode", recording)
    GazeFollow(FIXTURE / "large", "test", input_size=32, output_size=16)[0]
    (width, height), decoded, scale = scales[-1]
    assert scale < 1 and decoded == (int(np.ceil(height * scale)), int(np.ceil(width * scale)))
    GazeFollow(FIXTURE / "large", "test", input_size=224, output_size=16)[0]  # the face is too small for 224 px
    GazeFollow(FIXTURE / "data", "test", input_size=32, output_size=16)[0]  # the image is too small
    assert [scale for _, _, scale in scales[1:]] == [1.0, 1.0]


def pil_reference(image: Image.Image, colour: ColourJitter) -> Image.Image:
    """The previous pipeline's brightness, contrast and saturation steps (PIL's enhancers, clipped after each)."""
    image = ImageEnhance.Brightness(image).enhance(colour.brightness)
    image = ImageEnhance.Contrast(image).enhance(colour.contrast)
    return ImageEnhance.Color(image).enhance(colour.saturation)


@pytest.mark.parametrize("factors", [(1.4, 1.0, 1.0), (1.0, 0.6, 1.0), (1.0, 1.3, 1.0), (1.0, 1.0, 0.2),
                                     (1.0, 1.0, 1.4), (0.8, 1.2, 0.7)])
def test_colour_transform_follows_pil_enhancers(factors):
    image = Image.open(FIXTURE / "data" / "train" / "00000000" / "00000000.jpg").convert("RGB")
    colour = ColourJitter(*factors, hue=0.0)
    ours = np.asarray(colour_jitter(image, colour), dtype=np.int64)
    reference = np.asarray(pil_reference(image, colour), dtype=np.int64)
    difference = np.abs(ours - reference)
    # PIL rounds and clips after each step, we once at the end: half a level per step, rarely more than two levels.
    steps = sum(factor != 1.0 for factor in factors)
    assert difference.mean() < 0.6 * steps and np.mean(difference > 2) < 0.01, (factors, difference.mean())


def test_one_hue_turn_is_the_identity_and_small_turns_keep_the_grey_level():
    image = Image.open(FIXTURE / "data" / "train" / "00000000" / "00000000.jpg").convert("RGB")
    pixels = np.asarray(image, dtype=np.float64)
    turned = np.asarray(colour_jitter(image, ColourJitter(1.0, 1.0, 1.0, 0.04)), dtype=np.float64)
    assert np.abs(turned - pixels).mean() > 1  # it does change the colours
    # A turn about the grey axis keeps R + G + B (up to rounding and clipping).
    assert np.abs(turned.sum(axis=2) - pixels.sum(axis=2)).mean() < 2
    full = np.asarray(colour_jitter(image, ColourJitter(1.0, 1.0, 1.0, 1.0)), dtype=np.float64)
    assert np.abs(full - pixels).max() <= 1


def test_samples_are_contiguous_float32(single_thread):
    dataset = GazeFollow(FIXTURE / "data", "train", input_size=32, output_size=16, seed=3)
    sample = dataset[(0, 0)]
    for name in ("image", "face", "head_mask"):
        assert sample[name].dtype == torch.float32 and sample[name].is_contiguous(), name
