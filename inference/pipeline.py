"""Prediction runs: one image, or a frame sequence (a folder of frames or a video), with head boxes given (typed in,
or one head-box file per person) or found by a head detector and linked into tracks. Each writes
`predictions.csv` / `predictions.json`, overlays, and for a sequence `tracks/<person>.csv` and an annotated
animation (MP4 or GIF) into the output folder, and returns the JSON document's settings and counts.

A sequence is read up to three times, so nothing but the table rows is held for the whole sequence: with
`smooth_boxes` > 1 a first pass detects and tracks every head (the boxes are smoothed before any prediction); the
prediction pass; with `smooth_points` > 1 a last pass draws the frames after the points have been smoothed.
Otherwise detection, prediction and drawing happen in one pass.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from datasets.videoattentiontarget import smooth_track
from inference.detection import DetectionCounts, filter_detections
from inference.outputs import (
    GAZE3D_FIELDS, OVERLAY_FOLDER, AnimationWriter, animation_frame, check_animation_format, draw_overlay,
    prediction_row, write_tables, write_track_tables,
)
from inference.predictor import PersonPrediction, Predictor
from inference.sources import (
    IMAGE_SUFFIXES, HeadBox, natural_key, parse_head_box, read_head_box_file, read_image, video_frames, video_info,
)
from inference.tracking import IoUTracker

DEFAULT_FPS = 10.0  # frames per second of the animation of a frame folder
GIF_WIDTH = 640  # width a GIF animation is scaled down to unless --animation_width says otherwise


@dataclass
class HeadFinder:
    """A head detector with its filters (`--min_head_score`, `--min_head_size`: the shorter side of the head box,
    pixels) and the counts of what they dropped."""

    detector: object
    spec: str
    min_score: float = 0.0
    min_size: float = 0.0
    detect_width: int = 0  # frames wider than this are scaled down to it for detection (0 = full size)
    counts: DetectionCounts = field(default_factory=DetectionCounts)

    def find(self, image: Image.Image):
        scale = 1.0
        if 0 < self.detect_width < image.width:
            scale = self.detect_width / image.width
            image = image.resize((self.detect_width, max(1, round(image.height * scale))), Image.Resampling.BILINEAR)
        detections = [dataclasses.replace(d, box=d.box / scale) for d in self.detector.detect(image)]
        return filter_detections(detections, self.min_score, self.min_size, self.counts)

    def settings(self) -> dict:
        return {"detector": self.spec, "min_head_score": self.min_score, "min_head_size": self.min_size,
                "detect_width": self.detect_width, "detections": self.counts.summary()}


def predict_image(predictor: Predictor, image_path: str | Path, head_boxes: Sequence[str | HeadBox],
                  out_dir: str | Path, *, finder: HeadFinder | None = None, gaze3d=None) -> dict:
    """Predict the people of one image: the "x_min,y_min,x_max,y_max" pixel boxes named person1, person2, ... (or
    HeadBox objects, kept as they are: the web demo's detected and drawn boxes) or, without boxes, the heads `finder`
    detects (person1 = the highest score). Writes overlays/<image stem>_<person>.png and the tables."""
    if not head_boxes and finder is None:
        raise ValueError("--image needs --head_box x_min,y_min,x_max,y_max (pixels) or a head detector")
    image_path, out_dir = Path(image_path), Path(out_dir)
    if head_boxes:
        boxes = [box if isinstance(box, HeadBox) else parse_head_box(box, f"person{i}", f"--head_box #{i} ({box})")
                 for i, box in enumerate(head_boxes, 1)]
    image = read_image(image_path)
    if not head_boxes:
        boxes = [HeadBox(f"person{i}", detection.box, f"{finder.spec} detection #{i} in {image_path}", detection.score)
                 for i, detection in enumerate(finder.find(image), 1)]
    predictions = _predict(predictor, gaze3d, image, boxes, str(image_path))
    rows = [prediction_row(image_path.name, image.size, p, _overlay_name(image_path.name, p.person))
            for p in predictions]
    _write_overlays(out_dir, image_path.name, image, predictions)
    summary = {**predictor.settings(), **_extra_settings(finder, gaze3d), "mode": "image", "image": str(image_path),
               "frames": 1, "frames_skipped": [], "people": len(predictions), "animation": None}
    write_tables(out_dir, rows, summary)
    return summary


def predict_sequence(predictor: Predictor, out_dir: str | Path, *, head_box_files: Sequence[str | Path] = (),
                     frames_dir: str | Path | None = None, video: str | Path | None = None,
                     finder: HeadFinder | None = None, gaze3d=None, tracker: IoUTracker | None = None,
                     skip_missing_frames: bool = False, animation: str = "auto", fps: float | None = None,
                     animation_width: int | None = None, every_nth_frame: int = 1, start: float = 0.0,
                     end: float | None = None, smooth_boxes: int = 1, smooth_points: int = 1,
                     overlays: bool | None = None,
                     progress: bool | Callable[[str, int, int | None], None] = True) -> dict:
    """Predict a sequence from `frames_dir` (image files) or `video` (frames named 00000001.jpg, ... see
    sources.video_frames).

    With `head_box_files` (one per person, VideoAttentionTarget format) the frames are those the files name, in
    natural name order; a named frame that does not exist is an error naming the file and line, unless
    `skip_missing_frames`, which skips and lists it. Without, every frame (of [start, end) seconds for a video, then
    every `every_nth_frame`-th) goes through `finder`, and `tracker` (IoU + Hungarian) names the people.

    `smooth_boxes` / `smooth_points` (odd numbers of processed frames; 1 = off): centred moving average of each
    person's head box (as the VideoAttentionTarget loader smooths) / predicted point over the person's frames.
    `animation`: "auto" (MP4 for a video at its own frame rate / every_nth_frame, GIF for a folder at 10 fps),
    "mp4", "gif" or "none"; `animation_width` (None: 640 px for a GIF, full size for an MP4; 0 = full size).
    `overlays` (None: for a folder, not for a video): one PNG per person per frame.
    `progress`: a tqdm bar on stderr (True), none (False), or a function called as `progress(stage, frames done,
    frames in the pass or None)` before the first frame of each pass and after every frame (the web demo's bar).
    """
    if (frames_dir is None) == (video is None):
        raise ValueError("a sequence needs exactly one of a frames folder (--frames) or a video (--video)")
    if not head_box_files and finder is None:
        raise ValueError("a sequence needs head-box files (--head_boxes), one per person, or a head detector")
    if head_box_files and (every_nth_frame != 1 or start or end is not None):
        raise ValueError("--every_nth_frame, --start and --end select the frames in which heads are detected; with "
                         "--head_boxes the frames processed are those the files name")
    if video is None and (start or end is not None):
        raise ValueError("--start and --end (seconds) apply to a video; for a frames folder use --every_nth_frame")
    if every_nth_frame < 1:
        raise ValueError(f"--every_nth_frame: expected an integer >= 1, found {every_nth_frame}")
    for name, window in (("--smooth_boxes", smooth_boxes), ("--smooth_points", smooth_points)):
        if window < 1 or window % 2 == 0:
            raise ValueError(f"{name}: expected an odd number of frames (1 = no smoothing), found {window}")
    out_dir = Path(out_dir)
    info = video_info(video) if video is not None else None
    kind = animation if animation != "auto" else ("mp4" if video is not None else "gif")
    if fps is None:
        fps = info.fps / every_nth_frame if info is not None and info.fps > 0 else DEFAULT_FPS
    check_animation_format(kind, fps)
    width = animation_width if animation_width is not None else (GIF_WIDTH if kind == "gif" else 0)
    overlays = video is None if overlays is None else overlays

    if head_box_files:
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
            present = [name for name in names if name not in absent]
            source = _folder_source(frames_dir, present)
            total = len(present)
        else:
            def source():
                wanted = set(first_mention)
                return (frame for frame in video_frames(video) if frame[0] in wanted)
            total = len(names)
    else:
        if frames_dir is not None:
            frames_dir = Path(frames_dir)
            if not frames_dir.is_dir():
                raise FileNotFoundError(f"frames folder not found: {frames_dir}")
            present = sorted((p.name for p in frames_dir.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                             key=natural_key)[::every_nth_frame]
            if not present:
                raise ValueError(f"{frames_dir}: no image files ({', '.join(IMAGE_SUFFIXES)})")
            source = _folder_source(frames_dir, present)
            total = len(present)
        else:
            def source():
                return video_frames(video, start, end, every_nth_frame)
            total = _selected_frames(info, start, end, every_nth_frame)
        tracker = tracker or IoUTracker()
        names, first_mention, tracks = None, {}, None

    def detected(name: str, image: Image.Image) -> list[HeadBox]:
        return [HeadBox(person, detection.box, f"{finder.spec} detection in {name}", detection.score)
                for person, detection in tracker.update(finder.find(image))]

    def bar(frames: Iterator, description: str) -> Iterator:
        if callable(progress):
            return _reported(frames, description, total, progress)
        return tqdm(frames, total=total, desc=description, disable=not progress, unit="frame")

    if tracks is None and smooth_boxes > 1:  # detect and track first, so the boxes are smoothed before predicting
        by_person: dict[str, dict[str, HeadBox]] = {}
        for name, image in bar(source(), "detect heads"):
            for head_box in detected(name, image):
                by_person.setdefault(head_box.person, {})[name] = head_box
        tracks = list(by_person.values())
    if tracks is not None and smooth_boxes > 1:
        tracks = [_smoothed_boxes(track, smooth_boxes) for track in tracks]

    sequence_gaze = gaze3d is not None and gaze3d.num_frames > 1  # needs each person's later frames: own pass
    render_now = smooth_points == 1 and not sequence_gaze
    writer = AnimationWriter(out_dir / f"animation.{kind}", fps) if kind != "none" else None
    try:
        rows, kept, seen = [], {}, []
        for name, image in bar(source(), "predict"):
            head_boxes = ([track[name] for track in tracks if name in track] if tracks is not None
                          else detected(name, image))
            predictions = _predict(predictor, None if sequence_gaze else gaze3d, image, head_boxes, name)
            seen.append(name)
            rows += [prediction_row(name, image.size, p, _overlay_name(name, p.person) if overlays else "")
                     for p in predictions]
            if render_now:
                _render(out_dir, writer, name, image, predictions, overlays, width)
            else:
                kept[name] = predictions
            if names is not None and len(seen) == len(names):
                break  # a video's remaining frames are named by no head-box file
        done = set(seen)
        skipped = [name for name in names if name not in done] if names is not None else []
        if names is not None and video is not None:  # frames named past the video's end are known only once it is read
            _refuse_missing(skipped, names, first_mention, f"the video {video}", skip_missing_frames)
        if not seen:
            raise ValueError(f"none of the {len(names)} frames named in the head-box files exists; nothing predicted"
                             if names is not None else "no frames selected; nothing predicted")
        if sequence_gaze:
            _sequence_gaze3d(gaze3d, bar(source(), "3D gaze"), rows, kept)
        if not render_now:
            if smooth_points > 1:
                _smooth_points(rows, kept, smooth_points)
            for name, image in bar(source(), "draw"):
                if name in kept:
                    _render(out_dir, writer, name, image, kept[name], overlays, width)
    except BaseException:
        if writer is not None:
            writer.abort()
        raise
    if writer is not None:
        writer.close()
    out_dir.mkdir(parents=True, exist_ok=True)
    track_files = write_track_tables(out_dir, rows)
    summary = {**predictor.settings(), **_extra_settings(finder, gaze3d), "mode": "sequence",
               "source": str(frames_dir if frames_dir is not None else video),
               "head_box_files": [str(path) for path in head_box_files], "frames": len(seen),
               "frames_skipped": skipped, "every_nth_frame": every_nth_frame, "start": start, "end": end,
               "video_fps": info.fps if info is not None else None,
               "tracking": None if head_box_files else {"min_iou": tracker.min_iou, "max_missed": tracker.max_missed},
               "smooth_boxes": smooth_boxes, "smooth_points": smooth_points,
               "people": sorted({row["person"] for row in rows}, key=natural_key), "track_files": track_files,
               "animation": writer.path.name if writer else None, "animation_fps": fps if writer else None}
    write_tables(out_dir, rows, summary)
    return summary


def _predict(predictor: Predictor, gaze3d, image: Image.Image, head_boxes: list[HeadBox],
             name: str) -> list[PersonPrediction]:
    """The 2D predictions of every person of one image (one batch), with their 3D gaze when a Gaze360 model is given."""
    predictions = predictor.predict(image, head_boxes, name)
    if gaze3d is not None and predictions:
        directions = gaze3d.estimate(image, [p.head_box for p in predictions])
        predictions = [dataclasses.replace(p, gaze3d=d) for p, d in zip(predictions, directions)]
    return predictions


def _extra_settings(finder: HeadFinder | None, gaze3d) -> dict:
    return {"head_boxes_from": finder.spec if finder else "given",
            **({"detection": finder.settings()} if finder else {}),
            **(gaze3d.settings() if gaze3d is not None else {})}


def _folder_source(frames_dir: Path, names: list[str]) -> Callable[[], Iterator[tuple[str, Image.Image]]]:
    return lambda: ((name, read_image(frames_dir / name)) for name in names)


def _reported(frames: Iterator, stage: str, total: int | None,
              report: Callable[[str, int, int | None], None]) -> Iterator:
    report(stage, 0, total)
    for done, frame in enumerate(frames, start=1):
        yield frame
        report(stage, done, total)


def _selected_frames(info, start: float, end: float | None, every_nth_frame: int) -> int | None:
    """About how many frames a video selection holds (for the progress bar), or None when the video does not say."""
    if info.frames is None or info.fps <= 0:
        return None
    first = math.ceil(start * info.fps)
    last = info.frames if end is None else min(info.frames, math.ceil(end * info.fps))
    return max(0, math.ceil((last - first) / every_nth_frame))


def _smoothed_boxes(track: dict[str, HeadBox], window: int) -> dict[str, HeadBox]:
    names = sorted(track, key=natural_key)
    boxes = smooth_track(np.array([track[name].box for name in names]), window)
    return {name: dataclasses.replace(track[name], box=box) for name, box in zip(names, boxes)}


def _sequence_gaze3d(gaze3d, frames: Iterator[tuple[str, Image.Image]], rows: list[dict],
                     kept: dict[str, list[PersonPrediction]]) -> None:
    """3D gaze of a sequence model (num_frames n = 2k + 1) for every person-frame: the window of the person's own
    processed frames j - k .. j + k, the first / last one repeated beyond the ends of the track. Only the crops of
    the windows still open are kept in memory. Fills the 3D gaze of `rows` and `kept`."""
    half = gaze3d.num_frames // 2
    appearances: dict[str, int] = {}
    for predictions in kept.values():
        for prediction in predictions:
            appearances[prediction.person] = appearances.get(prediction.person, 0) + 1
    row_of = {(row["frame"], row["person"]): row for row in rows}
    views: dict[str, dict[int, object]] = {person: {} for person in appearances}
    where: dict[str, list[tuple[str, int]]] = {person: [] for person in appearances}
    done = dict.fromkeys(appearances, 0)
    for name, image in frames:
        ready = []  # (person, appearance index) whose window is complete
        for index, prediction in enumerate(kept.get(name, ())):
            person = prediction.person
            j = len(where[person])
            where[person].append((name, index))
            views[person][j] = gaze3d.views(image, prediction.head_box)
            last = appearances[person] - 1
            while done[person] <= min(j - half, last) or (j == last and done[person] <= last):
                ready.append((person, done[person]))
                done[person] += 1
        windows = [[views[person][min(max(j + offset, 0), appearances[person] - 1)]
                    for offset in range(-half, half + 1)] for person, j in ready]
        for (person, j), direction in zip(ready, gaze3d.estimate_windows(windows)):
            frame, index = where[person][j]
            kept[frame][index] = dataclasses.replace(kept[frame][index], gaze3d=direction)
            row_of[(frame, person)].update(_gaze3d_fields(kept[frame][index]))
            if j >= half:  # no later window of this person reaches back to appearance j - half
                views[person].pop(j - half, None)


def _gaze3d_fields(prediction: PersonPrediction) -> dict:
    """The 3D gaze columns of a prediction's table row."""
    return {key: value for key, value in prediction_row("", (1, 1), prediction, "").items()
            if key in GAZE3D_FIELDS}


def _smooth_points(rows: list[dict], kept: dict[str, list[PersonPrediction]], window: int) -> None:
    """Replace each person's gaze points (rows and kept predictions) by their centred moving average over the
    person's frames."""
    by_person: dict[str, list[tuple[dict, str, int]]] = {}
    positions = {(name, p.person): i for name, predictions in kept.items() for i, p in enumerate(predictions)}
    for row in rows:
        by_person.setdefault(row["person"], []).append(row)
    for person, person_rows in by_person.items():
        points = smooth_track(np.array([[row["gaze_x"], row["gaze_y"]] for row in person_rows]), window)
        for row, (x, y) in zip(person_rows, points):
            row.update(gaze_x=float(x), gaze_y=float(y), gaze_x_px=float(x) * row["image_width"],
                       gaze_y_px=float(y) * row["image_height"])
            index = positions[(row["frame"], person)]
            kept[row["frame"]][index] = dataclasses.replace(kept[row["frame"]][index], gaze_point=(float(x), float(y)))


def _render(out_dir: Path, writer: AnimationWriter | None, name: str, image: Image.Image,
            predictions: list[PersonPrediction], overlays: bool, width: int) -> None:
    if overlays:
        _write_overlays(out_dir, name, image, predictions)
    if writer is not None:
        writer.write(animation_frame(draw_overlay(image, predictions), width))


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


def _overlay_name(frame: str, person: str) -> str:
    return f"{OVERLAY_FOLDER}/{Path(frame).stem}_{person}.png"


def _write_overlays(out_dir: Path, frame: str, image: Image.Image, predictions) -> None:
    """One overlay PNG per person (the image's own size)."""
    folder = out_dir / OVERLAY_FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    for prediction in predictions:
        # Overlays are photographs: zlib's higher levels shrink them ~15 % for 4x the time.
        draw_overlay(image, [prediction]).save(out_dir / _overlay_name(frame, prediction.person), compress_level=1)
