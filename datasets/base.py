"""The one sample-building path of every gaze-following dataset: read the image (and depth map), turn the stored
coordinates into pixels, augment, crop the face, draw the target heatmap and pad the gaze points.

A dataset subclass only parses its annotation format into the columns `_store_samples` takes and states two
parameters: the units its head boxes and its points are stored in (`head_box_units`, `point_units`, each "pixels" of
the image the annotation belongs to or "normalised" to [0, 1]), and where its images and depth maps live
(`image_path`, `depth_path`). Everything else (augmentation, face crop, heatmap, padding, depth) is this file's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from datasets.errors import DataError
from datasets.heatmap import gaze_heatmap
from datasets.image_files import cannot_decode, decode, eight_bit, open_image, read_image_file
from datasets.transforms import (
    AUGMENTATION_STEPS, Annotation, clamp_box, depth_tensor, plan_inputs, render_inputs, restrict_augmentation,
    sample_augmentation,
)

MAX_GAZE_POINTS = 20  # gaze points are padded to this many rows (with -1) so samples of any dataset batch
UNITS = ("pixels", "normalised")
# A JPEG is decoded at 1/2, 1/4 or 1/8 size when both the scene region and the face region keep at least this many
# times the input size on each side (tests/test_sample_pipeline.py bounds the difference to full-size decoding).
DRAFT_MARGIN = 2.0


class GazeTargetDataset(Dataset):
    """Base of the GazeFollow, VideoAttentionTarget and GOO loaders: samples as dicts of tensors (see __getitem__).

    Subclasses call `_init_sampling(...)` with the shared options, then `_store_samples(...)`, and define
    `head_box_units`, `point_units`, `protocol` (the evaluation protocol of the dataset, see eval/evaluate.py),
    `image_path(relative)` and `depth_path(relative)`.

    heatmap_sigma: Gaussian sigma of the target heatmap in output cells.
    random_sigma (train only): a (low, high) range drawn uniformly per sample, or a callable taking the sample's numpy
        Generator; replaces heatmap_sigma for training targets.
    seed: with set_epoch(epoch), the augmentation and random sigma of sample i are drawn from
        default_rng([seed, epoch, i]), so a sample is the same whatever the worker count or order.
    depth: also return the sample's precomputed depth map ("depth", [3, S, S], see transforms.depth_tensor).
    """

    head_box_units: str = "pixels"
    point_units: str = "pixels"
    protocol: str = "gazefollow"
    augmentations: tuple[str, ...] = AUGMENTATION_STEPS  # the steps applied when augmenting (set_augmentations)

    def _init_sampling(self, split: str, input_size: int, output_size: int, augment: bool | None,
                       heatmap_sigma: float, random_sigma, seed: int, depth: bool) -> None:
        if split not in ("train", "test"):
            raise ValueError(f"split must be 'train' or 'test', found {split!r}")
        is_test = split == "test"
        augment = (not is_test) if augment is None else augment
        if is_test and augment:
            raise ValueError("test samples are never augmented: their coordinates are the original image's")
        if is_test and random_sigma is not None:
            raise ValueError("random_sigma applies to training targets only; test targets use heatmap_sigma")
        if heatmap_sigma <= 0:
            raise ValueError(f"heatmap_sigma must be positive, found {heatmap_sigma}")
        if random_sigma is not None and not callable(random_sigma):
            low, high = random_sigma
            if not 0 < low <= high:
                raise ValueError(f"random_sigma must be a range (low, high) with 0 < low <= high, found {random_sigma}")
            random_sigma = (float(low), float(high))
        self.split = split
        self.input_size = input_size
        self.output_size = output_size
        self.augment = augment
        self.heatmap_sigma = heatmap_sigma
        self.random_sigma = random_sigma
        self.seed = seed
        self.depth = depth
        self.epoch = 0

    def _store_samples(self, paths, annotation_files, lines, head_boxes, eye_points, gaze_points, inout) -> None:
        """Keep the samples as numpy columns: workers forked by a DataLoader then share them without Python reference
        counts copying every page. `gaze_points` is a list of (N_i, 2) arrays (empty for out-of-frame samples);
        `annotation_files` names the annotation file of each sample and `lines` its line (or record) number, for errors."""
        if not len(paths):
            raise DataError(f"{self.__class__.__name__}: no {self.split} samples left after cleaning")
        self._paths = np.array(paths)
        self._annotation_names, source_ids = np.unique(np.array([str(s) for s in annotation_files]), return_inverse=True)
        self._annotation_ids = source_ids.astype(np.int32)
        self._lines = np.array(lines, dtype=np.int64)
        self._head_boxes = np.asarray(head_boxes, dtype=np.float64).reshape(-1, 4)
        self._eye_points = np.asarray(eye_points, dtype=np.float64).reshape(-1, 2)
        self._inout = np.asarray(inout, dtype=np.int64)
        self._gaze_points = np.concatenate([np.asarray(p, dtype=np.float64).reshape(-1, 2) for p in gaze_points])
        self._point_offsets = np.cumsum([0] + [len(np.asarray(p).reshape(-1, 2)) for p in gaze_points])
        columns = {"annotation_files": self._annotation_ids, "lines": self._lines, "head_boxes": self._head_boxes,
                   "eye_points": self._eye_points, "inout": self._inout}
        for name, column in columns.items():
            if len(column) != len(self._paths):
                raise ValueError(f"_store_samples: {len(column)} {name} for {len(self._paths)} paths")

    # --- what subclasses define -------------------------------------------------------------------------------------

    def image_path(self, relative: str) -> Path:
        raise NotImplementedError

    def depth_path(self, relative: str) -> Path:
        raise NotImplementedError

    # --- shared -------------------------------------------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._paths)

    def set_epoch(self, epoch: int) -> None:
        """Select the epoch whose augmentations __getitem__ draws. Call it before iterating a DataLoader: workers
        copy the dataset when an iterator starts (persistent workers would keep the old epoch)."""
        if epoch < 0:
            raise ValueError(f"epoch must be >= 0, found {epoch}")
        self.epoch = int(epoch)

    def set_augmentations(self, steps) -> None:
        """Apply only these augmentation steps (names from datasets.transforms.AUGMENTATION_STEPS; the option
        train_augmentations). The random draws are unchanged, so a sample keeps e.g. its flip whatever else is off."""
        unknown = sorted(set(steps) - set(AUGMENTATION_STEPS))
        if unknown:
            raise ValueError(f"unknown augmentation steps {unknown}; known: {list(AUGMENTATION_STEPS)}")
        self.augmentations = tuple(step for step in AUGMENTATION_STEPS if step in steps)

    def where(self, index: int) -> str:
        """"file:line" of sample `index`'s annotation, for messages."""
        return f"{self._annotation_names[self._annotation_ids[index]]}:{self._lines[index]}"

    def sample_gaze_points(self, index: int) -> np.ndarray:
        start, end = self._point_offsets[index], self._point_offsets[index + 1]
        return self._gaze_points[start:end].copy()

    def inout_labels(self) -> np.ndarray:
        """The in/out label of every sample (1 in frame, 0 out), without reading any image."""
        return self._inout.copy()

    def pixel_annotation(self, index: int, image_size: tuple[int, int]) -> Annotation:
        """Sample `index`'s coordinates in pixels of its image of (width, height): the one place where the stored
        units (head_box_units, point_units) are turned into the convention of datasets/transforms.py."""
        size_xy = np.array(image_size, dtype=np.float64)
        box_scale = np.tile(size_xy, 2) if self.head_box_units == "normalised" else 1.0
        point_scale = size_xy if self.point_units == "normalised" else 1.0
        inside = self._inout[index] == 1
        return Annotation(
            head_box=clamp_box(self._head_boxes[index] * box_scale, image_size),
            eye_point=self._eye_points[index] * point_scale,
            gaze_points=self.sample_gaze_points(index) * point_scale if inside else np.zeros((0, 2)),
        )

    def __getitem__(self, key: int | tuple[int, int]) -> dict:
        """Sample `key`: an index, or an (epoch, index) pair (engine.data.EpochShuffleSampler) whose epoch overrides
        `set_epoch`'s for the augmentations.

        image [3, S, S] and face [3, S, S] uint8 RGB, and colour [3, 4] (their colour jitter: identity without it),
        which datasets.transforms.network_inputs turns into the ImageNet-normalised network inputs on the device
        (so loader workers do no float pass and send a quarter of the bytes); head_mask [1, S, S] uint8 (1 inside the
        head box);
        heatmap [O, O] in [0, 1] (peak-1 Gaussian at the mean gaze point, all zeros out of frame); inout scalar
        (1 in, 0 out); gaze_points [20, 2], eye_point [2] and head_box [4] (x_min, y_min, x_max, y_max) normalised
        to the returned image, gaze points padded with -1 (an out-of-frame person has none); image_size [2]
        (original width, height); index; flip (bool: mirrored by the augmentation); path; with depth, depth [3, S, S] (colour-mapped, in [0, 1]).
        """
        epoch, index = key if isinstance(key, tuple) else (self.epoch, key)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        relative = str(self._paths[index])
        where = self.where(index)
        rng = np.random.default_rng([self.seed, epoch, index])
        path = self.image_path(relative)
        what = f"image of the annotation at {where}"
        encoded = read_image_file(path, what)  # the size comes from the header: plan before decoding
        original_size = encoded.size
        annotation = self.pixel_annotation(index, original_size)
        try:  # the augmentation and the regions to read depend on the image size only
            params = sample_augmentation(rng, original_size, annotation) if self.augment else None
            if params is not None and self.augmentations != AUGMENTATION_STEPS:
                params = restrict_augmentation(params, self.augmentations)
            plan = plan_inputs(original_size, annotation, params)
        except ValueError as error:
            raise ValueError(f"{where} ({path}): {error}") from error
        image, scale = decode(encoded, plan.reduction(self.input_size, DRAFT_MARGIN), what)
        inputs = render_inputs(image, plan, self.input_size, scale)
        annotation = plan.annotation
        inside = self._inout[index] == 1
        depth = None
        if self.depth:
            what = f"depth map of the annotation at {where}"
            with open_image(self.depth_path(relative), what) as opened:
                # depth estimators often work at another resolution: the region is scaled to the map's own size
                box = plan.scene_box * np.tile(np.divide(opened.size, original_size), 2)
                try:
                    opened.load()
                except (OSError, SyntaxError) as error:
                    raise cannot_decode(opened.filename, what, error) from None
                depth = depth_tensor(eight_bit(opened, opened.filename, what), self.input_size, box, plan.flip)

        size_xy = np.array(plan.frame_size, dtype=np.float64)
        gaze_points = annotation.gaze_points / size_xy

        if inside:
            heatmap = gaze_heatmap(tuple(gaze_points.mean(axis=0)), self.output_size, self._sigma(rng))
        else:
            heatmap = gaze_heatmap(None, self.output_size)
        if len(gaze_points) > MAX_GAZE_POINTS:
            raise ValueError(f"{where}: {len(gaze_points)} gaze points; at most {MAX_GAZE_POINTS} are supported")
        padded = np.full((MAX_GAZE_POINTS, 2), -1.0)
        padded[: len(gaze_points)] = gaze_points
        sample = {
            **inputs,  # image, face (uint8), colour, head_mask, head_box (datasets.transforms.render_inputs)
            "heatmap": torch.from_numpy(heatmap),
            "inout": torch.tensor(float(inside)),
            "gaze_points": torch.from_numpy(padded).float(),
            "eye_point": torch.from_numpy(annotation.eye_point / size_xy).float(),
            "image_size": torch.tensor(original_size, dtype=torch.long),
            "index": torch.tensor(index, dtype=torch.long),
            "flip": torch.tensor(params is not None and params.flip),  # the image was mirrored (keys the feature cache)
            "path": relative,
        }
        if depth is not None:
            sample["depth"] = depth
        return sample

    def _sigma(self, rng: np.random.Generator) -> float:
        if self.random_sigma is None:
            return self.heatmap_sigma
        if callable(self.random_sigma):
            return float(self.random_sigma(rng))
        return float(rng.uniform(*self.random_sigma))


RandomSigma = tuple[float, float] | Callable[[np.random.Generator], float] | None
