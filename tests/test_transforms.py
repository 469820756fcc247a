"""Transforms checked by hand: every coordinate follows the image through jitter, crop, flip and resize."""
import numpy as np
import pytest
import torch
from PIL import Image

from datasets.heatmap import gaze_heatmap
from datasets.transforms import (
    IMAGENET_MEAN, IMAGENET_STD, Annotation, AugmentParams, ColourJitter, apply_augmentation, colour_jitter, crop,
    face_crop, head_mask, hflip, sample_augmentation, to_normalised_tensor,
)

WIDTH, HEIGHT = 300, 200


def person(head_box=(50.0, 40.0, 90.0, 80.0), eye=(70.0, 60.0), gaze=((250.0, 150.0),)) -> Annotation:
    return Annotation(np.array(head_box), np.array(eye), np.array(gaze, dtype=np.float64).reshape(-1, 2))


def image_with_bright_block(centre: tuple[float, float], size=(WIDTH, HEIGHT), half=2) -> Image.Image:
    """A dark image with a white square of (2 half) pixels a side around pixel `centre`."""
    array = np.full((size[1], size[0], 3), 20, dtype=np.uint8)
    x, y = int(centre[0]), int(centre[1])
    array[y - half : y + half, x - half : x + half] = 255
    return Image.fromarray(array)


def test_flip_maps_x_to_width_minus_x_and_swaps_box_sides():
    image = Image.new("RGB", (WIDTH, HEIGHT))
    flipped_image, flipped = hflip(image, person())
    assert flipped_image.size == (WIDTH, HEIGHT)
    np.testing.assert_allclose(flipped.head_box, [300 - 90, 40, 300 - 50, 80])
    np.testing.assert_allclose(flipped.eye_point, [230, 60])
    np.testing.assert_allclose(flipped.gaze_points, [[50, 150]])
    # Normalised: x -> 1 - x.
    np.testing.assert_allclose(flipped.gaze_points[0, 0] / WIDTH, 1 - 250 / WIDTH)
    # Flipping twice restores the image and every coordinate.
    back_image, back = hflip(flipped_image, flipped)
    np.testing.assert_allclose(back.head_box, person().head_box)
    np.testing.assert_allclose(back.gaze_points, person().gaze_points)


def test_flip_moves_the_heatmap_peak_to_the_mirrored_column():
    image = image_with_bright_block((250, 150))
    _, flipped = hflip(image, person())
    point = flipped.gaze_points[0] / [WIDTH, HEIGHT]
    heatmap = gaze_heatmap(tuple(point), size=64, sigma=3.0)
    row, col = np.unravel_index(heatmap.argmax(), heatmap.shape)
    original = gaze_heatmap((250 / WIDTH, 150 / HEIGHT), size=64, sigma=3.0)
    original_row, original_col = np.unravel_index(original.argmax(), original.shape)
    assert (original_row, original_col) == (int(0.75 * 64), int(250 / 300 * 64))
    assert (row, col) == (original_row, int((1 - 250 / 300) * 64))


def test_flip_moves_the_image_content_with_the_coordinates():
    image = image_with_bright_block((250, 150))
    flipped_image, flipped = hflip(image, person())
    array = np.asarray(flipped_image)[..., 0]
    ys, xs = np.nonzero(array > 128)
    # The block covered pixels 248..251; mirrored, pixels 300-252 .. 300-249 = 48..51, centred on x = 50.
    assert (xs.min(), xs.max()) == (48, 51)
    assert abs((xs.min() + xs.max() + 1) / 2 - flipped.gaze_points[0, 0]) <= 0.5


def test_crop_translates_coordinates_by_the_crop_offset():
    image = Image.new("RGB", (WIDTH, HEIGHT))
    cropped_image, cropped = crop(image, person(), (30, 20, 280, 190))
    assert cropped_image.size == (250, 170)
    np.testing.assert_allclose(cropped.head_box, [20, 20, 60, 60])
    np.testing.assert_allclose(cropped.eye_point, [40, 40])
    np.testing.assert_allclose(cropped.gaze_points, [[220, 130]])
    with pytest.raises(ValueError, match="does not lie inside"):
        crop(image, person(), (-1, 0, 100, 100))


@pytest.mark.parametrize("seed", range(60))
def test_sampled_crops_keep_head_box_eye_and_gaze_points_inside(seed):
    rng = np.random.default_rng(seed)
    x0, y0 = rng.uniform(0, WIDTH - 60), rng.uniform(0, HEIGHT - 60)
    annotation = person(
        head_box=(x0, y0, x0 + rng.uniform(10, 60), y0 + rng.uniform(10, 60)),
        eye=(x0 + 5, y0 + 5),
        gaze=rng.uniform([0, 0], [WIDTH, HEIGHT], size=(3, 2)),
    )
    params = sample_augmentation(rng, (WIDTH, HEIGHT), annotation)
    image, out = apply_augmentation(Image.new("RGB", (WIDTH, HEIGHT)), annotation, params)
    width, height = image.size
    points = np.concatenate([out.head_box.reshape(2, 2), out.eye_point[None], out.gaze_points])
    assert (points >= 0).all() and (points[:, 0] <= width).all() and (points[:, 1] <= height).all()
    if params.crop_box is not None:
        left, top, right, bottom = params.crop_box
        assert 0 <= left < right <= WIDTH and 0 <= top < bottom <= HEIGHT
        assert (width, height) == (right - left, bottom - top)


def test_out_of_frame_person_does_not_constrain_the_crop():
    # With no gaze point the crop only has to keep the head: over many draws some crops cut the far corner.
    annotation = person(gaze=np.zeros((0, 2)))
    rights = []
    for seed in range(200):
        params = sample_augmentation(np.random.default_rng(seed), (WIDTH, HEIGHT), annotation)
        if params.crop_box is not None:
            rights.append(params.crop_box[2])
    assert min(rights) < 200 and max(rights) <= WIDTH


@pytest.mark.parametrize("seed", range(40))
def test_bright_pixel_lands_where_the_transformed_gaze_point_says(seed):
    gaze = (230.0, 140.0)
    annotation = person(gaze=(gaze,))
    rng = np.random.default_rng(seed)
    params = sample_augmentation(rng, (WIDTH, HEIGHT), annotation)
    image, out = apply_augmentation(image_with_bright_block(gaze), annotation, params)
    # At the augmented image's own resolution: the block's centre is the gaze point (crops are whole pixels).
    red = np.asarray(image.convert("RGB"), dtype=np.float64).sum(axis=2)
    ys, xs = np.nonzero(red >= red.max() - 1)
    centre = np.array([(xs.min() + xs.max() + 1) / 2, (ys.min() + ys.max() + 1) / 2])
    np.testing.assert_allclose(centre, out.gaze_points[0], atol=0.51)
    # After the resize to the network input: the brightest cell is at the normalised point times the size.
    size = 112
    tensor = to_normalised_tensor(image, size).sum(dim=0)
    row, col = np.unravel_index(int(tensor.argmax()), tensor.shape)
    expected = out.gaze_points[0] / np.array(image.size) * size
    assert abs(col + 0.5 - expected[0]) <= 1.5 and abs(row + 0.5 - expected[1]) <= 1.5


def test_jitter_enlarges_the_box_on_every_side_and_clamps_it():
    params = AugmentParams(box_jitter=0.1, crop_box=None, flip=False, colour=None)
    _, out = apply_augmentation(Image.new("RGB", (WIDTH, HEIGHT)), person(), params)
    np.testing.assert_allclose(out.head_box, [46, 36, 94, 84])
    _, near_edge = apply_augmentation(Image.new("RGB", (WIDTH, HEIGHT)), person(head_box=(0, 0, 40, 40)), params)
    np.testing.assert_allclose(near_edge.head_box, [0, 0, 44, 44])


def test_colour_jitter_changes_pixels_only():
    image = image_with_bright_block((100, 100))
    image.paste((200, 30, 60), (0, 0, 50, 50))
    params = AugmentParams(box_jitter=None, crop_box=None, flip=False, colour=ColourJitter(0.7, 1.3, 0.5, 0.05))
    changed, out = apply_augmentation(image, person(), params)
    assert changed.size == image.size
    assert not np.array_equal(np.asarray(changed), np.asarray(image))
    for name in ("head_box", "eye_point", "gaze_points"):
        np.testing.assert_array_equal(getattr(out, name), getattr(person(), name))


def test_each_augmentation_is_drawn_about_half_of_the_time_and_reproducibly():
    annotation = person()
    draws = [sample_augmentation(np.random.default_rng(seed), (WIDTH, HEIGHT), annotation) for seed in range(400)]
    rates = [
        np.mean([p.box_jitter is not None for p in draws]),
        np.mean([p.crop_box is not None for p in draws]),
        np.mean([p.flip for p in draws]),
        np.mean([p.colour is not None for p in draws]),
    ]
    assert all(0.4 < rate < 0.6 for rate in rates), rates
    again = sample_augmentation(np.random.default_rng(7), (WIDTH, HEIGHT), annotation)
    assert again == draws[7]


def test_head_mask_marks_the_cells_the_box_covers():
    mask = head_mask(np.array([0.25, 0.5, 0.5, 0.75]), 8)
    expected = torch.zeros(1, 8, 8)
    expected[0, 4:6, 2:4] = 1
    assert torch.equal(mask, expected)
    # A box edge inside a cell marks that cell; a box outside [0, 1] is clipped.
    mask = head_mask(np.array([-0.2, 0.25, 0.25, 1.4]), 10)
    expected = torch.zeros(1, 10, 10)
    expected[0, 2:, 0:3] = 1
    assert torch.equal(mask, expected)


def test_face_crop_is_the_head_box_widened_by_ten_percent_per_side():
    # Blue everywhere except red on the widened box (100..150 +- 5, 50..100 +- 5): the face crop is all red.
    array = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    array[..., 2] = 255
    array[45:105, 95:155] = (255, 0, 0)
    face = face_crop(Image.fromarray(array), np.array([100.0, 50.0, 150.0, 100.0]), 32)
    red = (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]
    assert face.shape == (3, 32, 32)
    torch.testing.assert_close(face[0], torch.full((32, 32), red), atol=1e-5, rtol=0)
    # All red above: the crop is no larger than the widened box. Now make the widened box's outer pixel ring
    # blue: blue appears, so the crop is no smaller either.
    array[45:105, 95:155] = (0, 0, 255)
    array[46:104, 96:154] = (255, 0, 0)
    assert face_crop(Image.fromarray(array), np.array([100.0, 50.0, 150.0, 100.0]), 32)[2].max() > 0


def test_face_crop_clamps_to_the_image_and_rejects_an_empty_box():
    array = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
    array[:44, :44] = (255, 0, 0)
    face = face_crop(Image.fromarray(array), np.array([0.0, 0.0, 40.0, 40.0]), 16)  # widened to -4..44, clamped
    torch.testing.assert_close(face[0], torch.full((16, 16), (1.0 - IMAGENET_MEAN[0]) / IMAGENET_STD[0]))
    with pytest.raises(ValueError, match="no area"):
        face_crop(Image.fromarray(array), np.array([300.0, 10.0, 300.0, 20.0]), 16)


def test_to_normalised_tensor_applies_the_imagenet_statistics():
    mean_colour = tuple(int(round(m * 255)) for m in IMAGENET_MEAN)
    tensor = to_normalised_tensor(Image.new("RGB", (37, 23), mean_colour), 16)
    assert tensor.shape == (3, 16, 16) and tensor.dtype == torch.float32
    assert tensor.abs().max() < 0.01
    white = to_normalised_tensor(Image.new("RGB", (5, 5), (255, 255, 255)), 4)
    torch.testing.assert_close(white[:, 0, 0], torch.tensor([(1 - m) / s for m, s in zip(IMAGENET_MEAN, IMAGENET_STD)]))


def test_annotation_rejects_wrong_shapes():
    with pytest.raises(ValueError, match="head_box"):
        Annotation(np.zeros(3), np.zeros(2), np.zeros((1, 2)))
    with pytest.raises(ValueError, match="gaze_points"):
        Annotation(np.zeros(4), np.zeros(2), np.zeros(2))


def test_hue_shift_turns_the_colour_circle():
    # A third of a turn maps red to green and green to blue; factors of 1 leave everything else unchanged.
    image = Image.new("RGB", (4, 4), (255, 0, 0))
    image.paste((0, 255, 0), (0, 0, 2, 4))
    shifted = np.asarray(colour_jitter(image, ColourJitter(1.0, 1.0, 1.0, 1 / 3)), dtype=np.int64)
    assert np.abs(shifted[0, 3] - [0, 255, 0]).max() <= 12 and np.abs(shifted[0, 0] - [0, 0, 255]).max() <= 12
    unchanged = np.asarray(colour_jitter(image, ColourJitter(1.0, 1.0, 1.0, 0.0)))
    assert np.array_equal(unchanged, np.asarray(image))
