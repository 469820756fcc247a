"""Linking head detections across frames into tracks, so each person keeps one name through a video.

Each frame, the detections are matched to the live tracks by the Hungarian assignment
(`scipy.optimize.linear_sum_assignment`) on the cost 1 - IoU (a track's box = its last matched detection); a pair
with IoU below `min_iou` is not a match. An unmatched detection starts a new track (person1, person2, ... in order of
appearance); a track without a match survives `max_missed` processed frames, then ends (its name is not reused).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

from inference.detection import Detection


def box_iou(a, b) -> float:
    """Intersection over union of two (x_min, y_min, x_max, y_max) boxes."""
    return float(box_iou_matrix(np.asarray(a, dtype=np.float64)[None], np.asarray(b, dtype=np.float64)[None])[0, 0])


def box_iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """[N, M] IoU of the boxes a [N, 4] against b [M, 4]."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1, 4), np.asarray(b, dtype=np.float64).reshape(-1, 4)
    width = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    height = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    intersection = width * height
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - intersection
    return np.where(union > 0, intersection / np.where(union > 0, union, 1.0), 0.0)


@dataclass
class Track:
    name: str
    box: np.ndarray
    missed: int = 0


class IoUTracker:
    """`update(detections)` once per processed frame -> [(track name, detection)] for that frame's detections."""

    def __init__(self, min_iou: float = 0.3, max_missed: int = 5):
        if not 0.0 < min_iou <= 1.0:
            raise ValueError(f"--track_min_iou: expected a value in (0, 1], found {min_iou}")
        if max_missed < 0:
            raise ValueError(f"--track_max_missed: expected a number of frames >= 0, found {max_missed}")
        self.min_iou, self.max_missed = min_iou, max_missed
        self.tracks: list[Track] = []
        self.created = 0

    def update(self, detections: list[Detection]) -> list[tuple[str, Detection]]:
        matches: dict[int, int] = {}  # detection index -> track index
        if self.tracks and detections:
            iou = box_iou_matrix(np.array([d.box for d in detections]), np.array([t.box for t in self.tracks]))
            for row, column in zip(*linear_sum_assignment(1.0 - iou)):
                if iou[row, column] >= self.min_iou:
                    matches[row] = column
        matched_tracks = set(matches.values())
        for index, track in enumerate(self.tracks):
            track.missed = 0 if index in matched_tracks else track.missed + 1
        assigned = []
        for row, detection in enumerate(detections):
            if row in matches:
                track = self.tracks[matches[row]]
                track.box = detection.box
            else:
                self.created += 1
                track = Track(f"person{self.created}", detection.box)
                self.tracks.append(track)
            assigned.append((track.name, detection))
        self.tracks = [track for track in self.tracks if track.missed <= self.max_missed]
        return assigned
