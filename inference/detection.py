"""Head detection for prediction without hand-made head boxes.

Default: MTCNN (Zhang et al. 2016) from `facenet-pytorch`, whose weights ship inside the wheel (works offline).
MTCNN finds faces; a face box becomes a head box by FACE_TO_HEAD, an expansion fitted on real annotated frames
(`bench/bench_head_boxes.py` fits it and reports the IoU of derived against annotated head boxes, BENCHMARKS.md).
Optional: `yolo:PATH`, an Ultralytics-format detector file whose boxes are heads (e.g. a CrowdHuman head model);
needs `pip install ultralytics`.

Boxes are (x_min, y_min, x_max, y_max) in PIXELS of the image, as everywhere in inference/.
"""
from __future__ import annotations

import importlib.util
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

# Head box from an MTCNN face box (x1, y1, x2, y2) of width w and height h: centre (cx + dx w, cy + dy h), size
# (sw w, sh h). Fitted by bench/bench_head_boxes.py (mean IoU maximised) on the 12 annotated heads of
# ../shared/data/demo_frames (VideoAttentionTarget, 2 people, 6 frames); its output is copied here.
FACE_TO_HEAD = {"dx": 0.002, "dy": -0.15, "sw": 2.079, "sh": 1.457}
DETECTORS = ("mtcnn", "yolo:PATH")


@dataclass(frozen=True)
class Detection:
    """One head found in an image: `box` in pixels, `score` the detector's confidence in [0, 1]."""

    box: np.ndarray
    score: float


@dataclass
class DetectionCounts:
    """How many detections were kept and how many each filter dropped (over a whole run)."""

    kept: int = 0
    below_min_score: int = 0
    below_min_size: int = 0
    frames: int = 0
    dropped_examples: list = field(default_factory=list)

    def summary(self) -> dict:
        return {"frames": self.frames, "kept": self.kept, "dropped_below_min_head_score": self.below_min_score,
                "dropped_below_min_head_size": self.below_min_size}


def face_to_head_box(face_box, expansion: dict | None = None) -> np.ndarray:
    """The head box (pixels) of a face box (pixels) by the FACE_TO_HEAD expansion (or `expansion`)."""
    e = FACE_TO_HEAD if expansion is None else expansion
    x1, y1, x2, y2 = (float(v) for v in face_box)
    width, height = x2 - x1, y2 - y1
    cx, cy = (x1 + x2) / 2 + e["dx"] * width, (y1 + y2) / 2 + e["dy"] * height
    half_w, half_h = e["sw"] * width / 2, e["sh"] * height / 2
    return np.array([cx - half_w, cy - half_h, cx + half_w, cy + half_h])


class MTCNNHeadDetector:
    """MTCNN face detection (facenet-pytorch, weights from the installed wheel) with face boxes expanded to heads."""

    name = "mtcnn"

    def __init__(self, device: str = "cpu"):
        if importlib.util.find_spec("facenet_pytorch") is None:
            raise RuntimeError("the default head detector needs facenet-pytorch: `pip install --no-deps "
                               "facenet-pytorch` (--no-deps: its pins are older than this project's torch), or give "
                               "head boxes (--head_box / --head_boxes) or --detector yolo:PATH")
        from facenet_pytorch import MTCNN

        self.mtcnn = MTCNN(keep_all=True, device=device, post_process=False)
        self.told_too_small = False

    def detect(self, image: Image.Image) -> list[Detection]:
        if min(image.size) < self.mtcnn.min_face_size:  # MTCNN's image pyramid would be empty (it crashes)
            if not self.told_too_small:
                print(f"mtcnn: a {image.width}x{image.height} image is smaller than the smallest face MTCNN finds "
                      f"({self.mtcnn.min_face_size} px): no head can be detected in such images; give head boxes "
                      "(--head_box / --head_boxes) instead", file=sys.stderr)
                self.told_too_small = True
            return []
        faces, scores = self.mtcnn.detect(image.convert("RGB"))
        if faces is None:
            return []
        # facenet-pytorch returns object arrays under numpy 2; each row is 4 floats.
        return [Detection(face_to_head_box(np.asarray(face, dtype=np.float64)), float(score))
                for face, score in zip(faces, scores)]


class YoloHeadDetector:
    """An Ultralytics detector file (`yolo:PATH`) whose boxes are heads; every class it predicts counts as a head."""

    name = "yolo"

    def __init__(self, path: str | Path, device: str = "cpu"):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"--detector yolo:{path}: detector file not found")
        if importlib.util.find_spec("ultralytics") is None:
            raise RuntimeError(f"--detector yolo:{path} needs Ultralytics (`pip install ultralytics`), which is not "
                               "installed here; the default detector (mtcnn) needs nothing more")
        from ultralytics import YOLO

        if path.suffix in (".pt", ".pth"):  # Ultralytics unpickles these fully (its files hold model objects)
            print(f"--detector yolo:{path}: Ultralytics loads .pt detector files by full unpickling, which runs any "
                  "code the file holds: use only a file you trust (an exported .onnx detector needs no unpickling; "
                  "docs/trust.md)", file=sys.stderr)
        self.model, self.device = YOLO(str(path)), device

    def detect(self, image: Image.Image) -> list[Detection]:
        result = self.model.predict(image.convert("RGB"), device=self.device, verbose=False)[0]
        boxes = result.boxes.xyxy.cpu().numpy().astype(np.float64)
        scores = result.boxes.conf.cpu().numpy()
        return [Detection(box, float(score)) for box, score in zip(boxes, scores)]


def build_detector(spec: str, device: str = "cpu"):
    """"mtcnn" or "yolo:PATH"."""
    if spec == "mtcnn":
        return MTCNNHeadDetector(device)
    if spec.startswith("yolo:") and len(spec) > len("yolo:"):
        return YoloHeadDetector(spec[len("yolo:"):], device)
    raise ValueError(f"--detector: expected one of {', '.join(DETECTORS)}, found {spec!r}")


def filter_detections(detections: list[Detection], min_score: float, min_size: float,
                      counts: DetectionCounts) -> list[Detection]:
    """The detections scoring at least `min_score` whose head box's shorter side is at least `min_size` pixels, in
    descending score order; the dropped ones are counted in `counts`."""
    counts.frames += 1
    kept = []
    for detection in sorted(detections, key=lambda d: -d.score):
        width, height = detection.box[2] - detection.box[0], detection.box[3] - detection.box[1]
        if detection.score < min_score:
            counts.below_min_score += 1
        elif min(width, height) < min_size:
            counts.below_min_size += 1
        else:
            kept.append(detection)
    counts.kept += len(kept)
    return kept
