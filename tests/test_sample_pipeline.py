"""The fast sample pipeline (plan from the image size, reduced-size JPEG decoding, resize from a view, one float pass)
against the samples of the pipeline it replaced, stored in tests/fixtures/sample_pipeline (see make_fixture.py there:
written at commit 4c050ef, before the rewrite), and the colour jitter against PIL's enhancers."""
import io
import re
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance

import datasets.base as base
from datasets.image_files import decode, header_size, read_image_file
from datasets.errors import DataError
from datasets.gazefollow import GazeFollow
from datasets.transforms import network_inputs
from datasets.transforms import (
    IMAGENET_MEAN, IMAGENET_STD, ColourJitter, colour_jitter, colour_transform, grey_mean, sample_augmentation,
)

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
                    yield root, params, stored, normalised(dataset[(epoch, index)])


def normalised(sample: dict) -> dict:
    """A sample with its uint8 image and face turned into the network inputs, as the training step does."""
    batch = {key: sample[key][None] for key in ("image", "head_mask", "face", "colour")}
    image, head_mask, face = network_inputs(batch, torch.device("cpu"))
    return {**sample, "image": image[0], "head_mask": head_mask[0], "face": face[0]}


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
    decode = base.decode

    def recording(encoded, reduction, what):
        image, scale = decode(encoded, reduction, what)
        scales.append((encoded.size, tuple(image.shape[1:]), scale))
        return image, scale

    monkeypatch.setattr(base, "decode", recording)
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


def test_samples_carry_uint8_pixels_and_their_colour_jitter(single_thread):
    """Workers send uint8 pixels and head masks (a quarter of float32's bytes) and each sample's colour jitter as [3, 4]
    coefficients; network_inputs applies the jitter (pivoting on the scene's mean grey) and the normalisation on the
    device: equal to the per-image affine map of colour_transform, clipped, to float rounding."""
    dataset = GazeFollow(FIXTURE / "data", "train", input_size=32, output_size=16, seed=3)
    jittered = 0
    for epoch, index in ((epoch, index) for epoch in range(3) for index in range(len(dataset))):
        sample = dataset[(epoch, index)]
        for name in ("image", "face"):
            assert sample[name].dtype == torch.uint8 and sample[name].is_contiguous(), name
            assert sample[name].shape == (3, 32, 32)
        assert sample["head_mask"].dtype == torch.uint8 and sample["colour"].shape == (3, 4)
        with Image.open(dataset.image_path(str(dataset._paths[index]))) as image:
            size = image.size
        rng = np.random.default_rng([3, epoch, index])
        params = sample_augmentation(rng, size, dataset.pixel_annotation(index, size))
        found = normalised(sample)
        scene = sample["image"].permute(1, 2, 0).double().numpy()
        for name in ("image", "face"):
            pixels = sample[name].permute(1, 2, 0).double().numpy()
            if params.colour is not None:
                matrix, offset = colour_transform(params.colour, grey_mean(scene))
                pixels = np.clip(pixels @ matrix.T + offset, 0, 255)
            expected = (pixels / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
            np.testing.assert_allclose(found[name].permute(1, 2, 0).numpy(), expected, atol=2e-5, rtol=0)
        jittered += params.colour is not None
    assert jittered >= 2  # the jitter itself was compared, not only the identity


def _encoded(image: Image.Image, **save) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, **save)
    return buffer.getvalue()


@pytest.mark.parametrize("save", [
    {"format": "JPEG"}, {"format": "JPEG", "progressive": True}, {"format": "JPEG", "quality": 40, "subsampling": 0},
    {"format": "JPEG", "exif": b"Exif\x00\x00" + bytes(3000)}, {"format": "JPEG", "icc_profile": bytes(70000)},
    {"format": "PNG"}, {"format": "PNG", "optimize": True},
], ids=["baseline", "progressive", "444", "exif", "large_icc", "png", "png_optimised"])
@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_the_header_gives_pils_format_and_size(save, mode, tmp_path):
    """The sample pipeline reads a JPEG's or PNG's size from the header bytes it already holds (no PIL object):
    it is PIL's, also behind large EXIF / ICC segments (an ICC profile over 64 KB spans several APP2 segments)."""
    image = Image.radial_gradient("L").resize((123, 77)).convert(mode)
    data = _encoded(image, **save)
    path = tmp_path / "image"
    path.write_bytes(data)
    with Image.open(path) as opened:
        expected = (opened.format, opened.size)
        expected_pixels = np.asarray(opened.convert("RGB"))
    assert header_size(np.frombuffer(data, dtype=np.uint8)) == expected
    encoded = read_image_file(path, "test image")
    assert (encoded.format, encoded.size) == expected
    pixels, scale = decode(encoded, 1, "test image")
    assert scale == 1.0 and tuple(pixels.shape) == (3, 77, 123)
    np.testing.assert_array_equal(pixels.permute(1, 2, 0).numpy(), expected_pixels)  # torchvision's = PIL's


@pytest.mark.parametrize("data", [b"", b"\xff\xd8", b"\xff\xd8\xff\xda\x00\x02", b"\xff\xd8\x00\x00\x00\x00",
                                  b"\x89PNG\r\n\x1a\n" + bytes(16), b"GIF89a" + bytes(20)])
def test_headers_the_parser_does_not_follow_are_left_to_pil(data):
    assert header_size(np.frombuffer(data, dtype=np.uint8)) is None


def test_other_formats_go_through_pil_and_non_images_name_the_file(tmp_path):
    gif = tmp_path / "image.gif"
    Image.new("RGB", (20, 10), (200, 30, 40)).save(gif)
    encoded = read_image_file(gif, "test image")
    assert (encoded.format, encoded.size) == ("GIF", (20, 10))
    assert tuple(decode(encoded, 1, "test image")[0].shape) == (3, 10, 20)
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(DataError, match=rf"{re.escape(str(text))}: test image cannot be decoded"):
        read_image_file(text, "test image")
