"""Prediction runs: one image with head boxes typed in, or a frame sequence (a folder of frames or a video) with one
head-box file per person. Each writes overlays, `predictions.csv` / `predictions.json` and, for a sequence, an
animation into the output folder, and returns the JSON document's settings and counts.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from PIL import Image
from tqdm import tqdm

from inference.outputs import (
    animation_frame, check_animation_format, draw_overlay, prediction_row, write_animation, write_tables,
)
from inference.predictor import Predictor
from inference.sources import HeadBox, natural_key, parse_head_box, read_head_box_file, read_image, video_frames

OVERLAY_FOLDER = "overlays"


def predict_image(predictor: Predictor, image_path: str | Path, head_boxes: Sequence[str], out_dir: str | Path) -> dict:
    """Predict the people of one image, given as "x_min,y_min,x_max,y_max" pixel boxes named person1, person2, ...
    Writes overlays/<image stem>_<person>.png and the tables."""
    if not head_boxes:
        raise ValueError("--image needs at least one --head_box x_min,y_min,x_max,y_max (pixels)")
    image_path, out_dir = Path(image_path), Path(out_dir)
    boxes = [parse_head_box(text, f"person{i}", f"--head_box #{i} ({text})") for i, text in enumerate(head_boxes, 1)]
    image = read_image(image_path)
    predictions = predictor.predict(image, boxes, str(image_path))
    rows = _write_overlays(out_dir, image_path.name, image, predictions)
    summary = {**predictor.settings(), "mode": "image", "image": str(image_path), "frames": 1, "frames_skipped": [],
               "animation": None}
    write_tables(out_dir, rows, summary)
    return summary


def predict_sequence(predictor: Predictor, head_box_files: Sequence[str | Path], out_dir: str | Path, *,
                     frames_dir: str | Path | None = None, video: str | Path | None = None,
                     skip_missing_frames: bool = False, animation: str = "gif", fps: float = 10.0,
                     animation_width: int = 640, progress: bool = True) -> dict:
    """Predict every frame named in the head-box files (one file per person, VideoAttentionTarget format), taken from
    `frames_dir` (files of those names) or from `video` (frames named 00000001.jpg, ... see sources.video_frames),
    in natural name order. A named frame that does not exist is an error naming the head-box file and line, unless
    `skip_missing_frames`, which skips and lists it. Writes overlays/<frame stem>_<person>.png, the tables and
    animation.gif / .mp4 of the frames with every person drawn (scaled to `animation_width`; "none" = no animation).
    """
    if (frames_dir is None) == (video is None):
        raise ValueError("a sequence needs exactly one of a frames folder (--frames) or a video (--video)")
    if not head_box_files:
        raise ValueError("a sequence needs at least one head-box file (--head_boxes), one per person")
    check_animation_format(animation, fps)
    out_dir = Path(out_dir)
    tracks = _read_tracks(head_box_files)
    names = sorted({name for track in tracks for name in track}, key=natural_key)
    first_mention = {}
    for track in tracks:
        for name, head_box in track.items():
            first_mention.setdefault(name, head_box.where)

    if frames_dir is not None:
        frames_dir = Path(frames_dir)
        if not frames_dir.is_dir():
            raise FileNotFoundError(f"frames folder not found: {frames_dir}")
        missing = [name for name in names if not (frames_dir / name).is_file()]
        _refuse_missing(missing, names, first_mention, f"the folder {frames_dir}", skip_missing_frames)
        absent = set(missing)
        frames = ((name, read_image(frames_dir / name)) for name in names if name not in absent)
        total = len(names) - len(missing)
    else:
        frames = (frame for frame in video_frames(video) if frame[0] in first_mention)
        total = len(names)

    rows, animated, seen = [], [], set()
    for name, image in tqdm(frames, total=total, desc="predict", disable=not progress, leave=False):
        seen.add(name)
        head_boxes = [track[name] for track in tracks if name in track]
        predictions = predictor.predict(image, head_boxes, name)
        rows += _write_overlays(out_dir, name, image, predictions)
        if animation != "none":
            animated.append(animation_frame(draw_overlay(image, predictions), animation_width))
        if len(seen) == len(names):
            break  # a video's remaining frames are named by no head-box file
    skipped = [name for name in names if name not in seen]
    if video is not None:  # frames named beyond the end of the video are known only once it has been read
        _refuse_missing(skipped, names, first_mention, f"the video {video}", skip_missing_frames)
    if not seen:
        raise ValueError(f"none of the {len(names)} frames named in the head-box files exists; nothing predicted")
    animation_path = None
    if animation != "none":
        animation_path = out_dir / f"animation.{animation}"
        write_animation(animation_path, animated, fps)
    summary = {**predictor.settings(), "mode": "sequence",
               "source": str(frames_dir if frames_dir is not None else video),
               "head_box_files": [str(path) for path in head_box_files], "frames": len(seen),
               "frames_skipped": skipped, "animation": animation_path.name if animation_path else None,
               "animation_fps": fps if animation_path else None}
    write_tables(out_dir, rows, summary)
    return summary


def _read_tracks(head_box_files: Sequence[str | Path]) -> list[dict[str, HeadBox]]:
    """One {frame: HeadBox} per file; two files that would name the same person are an error."""
    tracks, owners = [], {}
    for path in head_box_files:
        track = read_head_box_file(path)
        person = next(iter(track.values())).person
        if person in owners:
            raise ValueError(f"{path}: person name {person!r} (the file's stem) is also that of {owners[person]}; "
                             "rename one of the files")
        owners[person] = path
        tracks.append(track)
    return tracks


def _refuse_missing(missing: list[str], names: list[str], first_mention: dict[str, str], source: str,
                    skip: bool) -> None:
    if missing and not skip:
        raise FileNotFoundError(
            f"{first_mention[missing[0]]}: frame {missing[0]!r} is not in {source} ({len(missing)} of the "
            f"{len(names)} frames named in the head-box files are missing: {', '.join(missing[:5])}"
            f"{', ...' if len(missing) > 5 else ''}); pass --skip_missing_frames to skip them"
        )


def _write_overlays(out_dir: Path, frame: str, image: Image.Image, predictions) -> list[dict]:
    """One overlay PNG per person (the image's own size) and that person's table row."""
    folder = out_dir / OVERLAY_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for prediction in predictions:
        name = f"{Path(frame).stem}_{prediction.person}.png"
        # Overlays are photographs: zlib's higher levels shrink them ~15 % for 4x the time.
        draw_overlay(image, [prediction]).save(folder / name, compress_level=1)
        rows.append(prediction_row(frame, image.size, prediction, f"{OVERLAY_FOLDER}/{name}"))
    return rows
