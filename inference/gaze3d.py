"""3D gaze for every head (`--gaze360_weights`): a model of this project's Gaze360 trainer (gaze360_main.py) run on
each head crop, giving yaw, pitch and an uncertainty beside the 2D gaze target.

The head crop is the head box (pixels) made square around its centre (Gaze360's crops are square head crops) and cut
from the frame (zero-padded past the border); it then goes through the trainer's evaluation transform
(`gaze360.transforms.frame_views`: Resize(input_size), the crop list, ImageNet normalisation). A sequence model
(num_frames n = 2k + 1) sees, for a person's frame, the crops of that person's k processed frames before and after it
(the first or last one repeated at the ends of the person's track), in the trainer's image order (frame_crops);
inference/pipeline.py gathers these windows in a pass of their own. A single image (--image) with a sequence model
repeats its one crop n times.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image

from inference.predictor import Gaze3D


class Gaze3DEstimator:
    """`Gaze3DEstimator(checkpoint, device)`, then `estimate(image, head_boxes)` -> one Gaze3D per box."""

    def __init__(self, path: str | Path, device: torch.device | str = "cpu"):
        from gaze360.models import decode_yaw_pitch
        from gaze360.options import crop_list
        from gaze360.train import load_trained_model

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--gaze360_weights: checkpoint not found: {path}")
        self.model, self.config = load_trained_model(path, device)
        self.path, self.device = path, torch.device(device)
        self.num_frames = self.config.num_frames
        self.crops = crop_list(self.config)
        self.decode = decode_yaw_pitch

    def views(self, image: Image.Image, head_box) -> torch.Tensor:
        """[crops, 3, S, S]: the normalised copies of one head crop (one frame of a window)."""
        from gaze360.transforms import frame_views

        return torch.stack(frame_views(head_crop(image, head_box), self.config.input_size, self.crops,
                                       resize=self.config.resize))

    @torch.no_grad()
    def estimate_windows(self, windows: Sequence[Sequence[torch.Tensor]]) -> list[Gaze3D]:
        """One Gaze3D per window of num_frames `views` (oldest first)."""
        if not windows:
            return []
        from gaze360.data import sequence_plan

        # The trainer's image order (frame_crops): frame f of the window with crop c, for each (f, c) of the plan.
        plan = sequence_plan(self.num_frames, len(self.crops), self.config.frame_crops)
        images = torch.stack([torch.stack([window[f][c] for f, c in plan]) for window in windows]).to(self.device)
        output = self.model(images)
        yaw_pitch = self.decode(output["output"].float(), self.config.target).cpu().numpy()
        sigma = output["sigma"].float().cpu().numpy()[:, 0]
        return [Gaze3D(float(yaw), float(pitch), float(s)) for (yaw, pitch), s in zip(yaw_pitch, sigma)]

    def estimate(self, image: Image.Image, head_boxes: Sequence[np.ndarray]) -> list[Gaze3D]:
        """One Gaze3D per head of one image (a sequence model sees the image's crop in every frame of its window)."""
        return self.estimate_windows([[self.views(image, box)] * self.num_frames for box in head_boxes])

    def settings(self) -> dict:
        return {"gaze360_weights": str(self.path), "gaze360_target": self.config.target,
                "gaze360_crops": list(self.crops), "gaze360_num_frames": self.num_frames}


def head_crop(image: Image.Image, box) -> Image.Image:
    """The square crop of side max(box width, height) centred on the head box (pixels), zero beyond the image."""
    x_min, y_min, x_max, y_max = (float(v) for v in box)
    side = max(x_max - x_min, y_max - y_min, 1.0)
    cx, cy = (x_min + x_max) / 2, (y_min + y_max) / 2
    left, top = round(cx - side / 2), round(cy - side / 2)
    return image.crop((left, top, left + round(side), top + round(side)))
