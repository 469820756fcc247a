"""Fit the face-to-head expansion of inference/detection.py on real annotated frames and report the IoU of derived
against annotated head boxes: `python -m bench.bench_head_boxes [--frames ../shared/data/demo_frames]`.

MTCNN runs on every frame that has annotated head boxes (person*.txt, VideoAttentionTarget format); each annotated
head is paired with the detected face whose centre lies inside it (the highest-scoring one). The expansion
(dx, dy, sw, sh) is fitted by maximising the mean IoU (Nelder-Mead from the mean ratios). Printed: the fit, the mean
and minimum IoU of the expansion in the code (FACE_TO_HEAD) through the full detector path, and a leave-one-person-out
IoU (fit on the other people, scored on the one left out), a fairer estimate for unseen people.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from inference.detection import FACE_TO_HEAD, MTCNNHeadDetector, face_to_head_box
from inference.sources import read_head_box_file, read_image
from inference.tracking import box_iou

DEFAULT_FRAMES = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "demo_frames"
KEYS = ("dx", "dy", "sw", "sh")


def paired_boxes(frames_dir: Path) -> list[tuple[str, str, np.ndarray, np.ndarray]]:
    """(frame, person, face box, annotated head box) for every annotated head of an existing frame."""
    detector = MTCNNHeadDetector()
    annotations = {path.stem: read_head_box_file(path) for path in sorted(frames_dir.glob("person*.txt"))}
    pairs = []
    for image_path in sorted(frames_dir.glob("*.jpg")):
        faces, scores = detector.mtcnn.detect(read_image(image_path))
        faces = [] if faces is None else [np.asarray(face, dtype=np.float64) for face in faces]
        for person, boxes in annotations.items():
            if image_path.name not in boxes:
                continue
            head = boxes[image_path.name].box
            inside = [(score, face) for face, score in zip(faces, scores)
                      if head[0] <= (face[0] + face[2]) / 2 <= head[2]
                      and head[1] <= (face[1] + face[3]) / 2 <= head[3]]
            if not inside:
                raise RuntimeError(f"{image_path}: MTCNN found no face inside {person}'s head box {head.tolist()}")
            pairs.append((image_path.name, person, max(inside, key=lambda pair: pair[0])[1], head))
    return pairs


def mean_iou(expansion: dict, pairs) -> float:
    return float(np.mean([box_iou(face_to_head_box(face, expansion), head) for _, _, face, head in pairs]))


def fit(pairs) -> dict:
    faces = np.array([face for _, _, face, _ in pairs])
    heads = np.array([head for _, _, _, head in pairs])
    fw, fh = faces[:, 2] - faces[:, 0], faces[:, 3] - faces[:, 1]
    start = [np.mean(((heads[:, 0] + heads[:, 2]) - (faces[:, 0] + faces[:, 2])) / 2 / fw),
             np.mean(((heads[:, 1] + heads[:, 3]) - (faces[:, 1] + faces[:, 3])) / 2 / fh),
             np.mean((heads[:, 2] - heads[:, 0]) / fw), np.mean((heads[:, 3] - heads[:, 1]) / fh)]
    result = minimize(lambda p: -mean_iou(dict(zip(KEYS, p)), pairs), start, method="Nelder-Mead",
                      options={"xatol": 1e-4, "fatol": 1e-6, "maxiter": 4000})
    return dict(zip(KEYS, (round(float(v), 3) for v in result.x)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=Path, default=DEFAULT_FRAMES)
    args = parser.parse_args()
    pairs = paired_boxes(args.frames)
    people = sorted({person for _, person, _, _ in pairs})
    fitted = fit(pairs)
    print(f"{len(pairs)} annotated heads ({len(people)} people) in {args.frames}")
    print(f"fitted expansion: {fitted}  mean IoU {mean_iou(fitted, pairs):.3f}")
    ious = [box_iou(face_to_head_box(face), head) for _, _, face, head in pairs]
    print(f"FACE_TO_HEAD in inference/detection.py: {FACE_TO_HEAD}  mean IoU {np.mean(ious):.3f}, "
          f"min {np.min(ious):.3f}")
    for person in people:
        training = [pair for pair in pairs if pair[1] != person]
        held_out = [pair for pair in pairs if pair[1] == person]
        print(f"leave-one-person-out: fitted without {person}, mean IoU on {person}: "
              f"{mean_iou(fit(training), held_out):.3f}")


if __name__ == "__main__":
    main()
