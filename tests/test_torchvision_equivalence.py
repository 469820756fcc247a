"""Where the project keeps hand-written code that torchvision also offers, the two agree, and where they differ the
difference is the documented reason to keep ours (datasets/transforms.py module docstring)."""
import numpy as np
import torch
from PIL import Image
from torchvision import tv_tensors
from torchvision.transforms.v2 import functional as F

from datasets.transforms import Annotation, clamp_box, crop, hflip

XYXY = tv_tensors.BoundingBoxFormat.XYXY


def annotation():
    return Annotation(head_box=np.array([12.5, 7.0, 30.25, 20.0]), eye_point=np.array([20.0, 12.0]),
                      gaze_points=np.array([[50.0, 33.5], [0.0, 39.0]]))


def test_box_flip_crop_and_clamp_equal_torchvision():
    image = Image.new("RGB", (64, 40))
    box = torch.from_numpy(annotation().head_box[None])
    _, flipped = hflip(image, annotation())
    torch.testing.assert_close(torch.from_numpy(flipped.head_box[None]), F.horizontal_flip_bounding_boxes(
        box, XYXY, canvas_size=(40, 64)))
    _, cropped = crop(image, annotation(), (20, 5, 60, 35))
    expected, _ = F.crop_bounding_boxes(box, XYXY, top=5, left=20, height=30, width=40)
    torch.testing.assert_close(torch.from_numpy(cropped.head_box[None]), F.clamp_bounding_boxes(
        expected, XYXY, canvas_size=(30, 40), clamping_mode="hard"))
    outside = np.array([-3.0, 2.0, 70.0, 50.0])
    torch.testing.assert_close(torch.from_numpy(clamp_box(outside, (64, 40))[None]), F.clamp_bounding_boxes(
        torch.from_numpy(outside[None]), XYXY, canvas_size=(40, 64), clamping_mode="hard"))


def test_points_differ_from_torchvision_keypoints_by_the_pixel_index_convention():
    image = Image.new("RGB", (64, 40))
    _, flipped = hflip(image, annotation())
    theirs = F.horizontal_flip_keypoints(torch.tensor(annotation().gaze_points), canvas_size=(40, 64)).numpy()
    # ours: continuous coordinates, x -> 64 - x (normalised x -> 1 - x); torchvision: pixel indices, x -> 63 - x
    np.testing.assert_allclose(flipped.gaze_points[:, 0], 64 - annotation().gaze_points[:, 0])
    np.testing.assert_allclose(theirs[:, 0], flipped.gaze_points[:, 0] - 1)
    _, cropped = crop(image, annotation(), (20, 5, 60, 35))  # translation: the same in both conventions
    theirs, _ = F.crop_keypoints(torch.tensor(annotation().gaze_points), top=5, left=20, height=30, width=40)
    np.testing.assert_allclose(cropped.gaze_points, theirs.numpy())
