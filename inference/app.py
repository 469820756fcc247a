"""A local web demo: `python -m inference.app --weights FILE [--port P]` serves a page on this machine where a person
uploads an image or a short video and sees the model's prediction.

On an image the heads are detected (MTCNN, as predict.py) and drawn as boxes the person can move, resize, delete or
add to; picking a person shows that person's heatmap overlay, gaze point and line, in/out probability, and, for a
generative decoder, the K sampled points (sliders for K and the number of steps), with the 3D gaze arrow when
`--gaze360_weights` is given; the table holds every person's values. A video is detected, tracked and predicted
frame by frame with a progress bar, then shown as the annotated MP4 beside its table. Predictions are made by
inference.pipeline, the code predict.py runs, so the page shows what predict.py writes for the same input, and its
tables can be downloaded as predictions.csv / predictions.json.

The server is Python's own http.server with a static page (inference/web/): it needs no package beyond the
project's. Gradio, the field's usual choice, was checked and not taken: with this project's constraints it installs
21 new packages (gradio, FastAPI, Starlette, uvicorn, orjson, pydub, ...) and replaces the installed Pillow 13.0 by
12.3, the library every image of the project is read with (docs/web_demo.md).

Bad uploads (not an image or a video, a corrupt video, a file over --max_upload_mb, a video with more frames than
--max_video_frames) get a one-line message on the page; an unexpected error is reported on the page in one line
and in full on the terminal.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import math
import mimetypes
import re
import shutil
import sys
import tempfile
import threading
import traceback
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import numpy as np
from PIL import Image, UnidentifiedImageError

from engine.config import ConfigError
from inference.pipeline import HeadFinder, predict_image, predict_sequence
from inference.predictor import Predictor
from inference.sources import HeadBox, read_image, video_frames, video_info
from inference.tracking import IoUTracker

DEFAULT_PORT = 7860  # Gradio's, so the page is where people who know those demos look
MAX_SAMPLES = 32  # the K slider's upper end
KEPT_UPLOADS = 20  # older uploads (and their results) are deleted from the working folder
KEPT_SAMPLERS = 16  # (K, steps) settings whose sampling process is kept (each shares the loaded model)
WEB = Path(__file__).with_name("web")
PAGES = {"/": ("index.html", "text/html; charset=utf-8"),
         "/static/app.js": ("app.js", "text/javascript; charset=utf-8"),
         "/static/app.css": ("app.css", "text/css; charset=utf-8")}
EXPECTED_ERRORS = (ValueError, FileNotFoundError, ConfigError, RuntimeError)  # the project's errors: a message
ANIMATED_FORMATS = ("GIF", "WEBP", "PNG")  # an animated file of these is predicted as a video
VIDEO_SUFFIXES = (".mp4", ".mov", ".avi", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".gif", ".wmv", ".flv")


class UserError(Exception):
    """A message for the page (and the HTTP status it is sent with)."""

    def __init__(self, message: str, status: HTTPStatus = HTTPStatus.BAD_REQUEST):
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    """One uploaded file in the working folder: an image (with the heads detected in it) or a video."""

    key: str
    name: str
    folder: Path
    path: Path
    kind: str  # "image" or "video"
    width: int
    height: int
    heads: list[HeadBox] = field(default_factory=list)
    frames: int | None = None  # a video's frame count, when its container says
    fps: float | None = None
    results: int = 0  # predictions made on it (each in its own result folder)


@dataclass
class Job:
    """A video prediction running in the background; the page polls it for the progress bar."""

    key: str
    upload: Upload
    state: str = "running"  # running, done, failed
    stage: str = "starting"
    done: int = 0
    total: int | None = None
    result: dict | None = None
    error: str | None = None

    def report(self, stage: str, done: int, total: int | None) -> None:
        self.stage, self.done, self.total = stage, done, total

    def status(self) -> dict:
        return {"job": self.key, "state": self.state, "stage": self.stage, "done": self.done, "total": self.total,
                "result": self.result, "error": self.error}


class GazeDemo:
    """What the page talks to: a predictor, a head detector (`finder`), an optional Gaze360 model (`gaze3d`), the
    uploads and the video jobs. Every model call holds one lock, so requests never interleave on the model.

    Its methods take and return JSON-ready values; the HTTP layer (`DemoServer`) only routes to them.
    """

    def __init__(self, predictor: Predictor, finder: HeadFinder | None = None, gaze3d=None,
                 tracker_settings: tuple[float, int] = (0.3, 5), max_upload_mb: float = 200.0,
                 max_video_frames: int = 300, work_dir: str | Path | None = None):
        self.predictor, self.finder, self.gaze3d = predictor, finder, gaze3d
        self.tracker_settings = tracker_settings
        self.max_upload_bytes = int(max_upload_mb * 1024 * 1024)
        self.max_upload_mb, self.max_video_frames = max_upload_mb, max_video_frames
        self.work_dir = Path(work_dir) if work_dir is not None else Path(tempfile.mkdtemp(prefix="gaze-demo-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.uploads: OrderedDict[str, Upload] = OrderedDict()
        self.jobs: dict[str, Job] = {}
        self.model_lock, self.state_lock = threading.Lock(), threading.Lock()
        self._sampling: OrderedDict[tuple[int, int], Predictor] = OrderedDict()  # (K, steps) -> predictor

    # --- what the page asks ---------------------------------------------------------------------------------------

    def info(self) -> dict:
        """The model and the page's limits; `sampling` is None for a decoder that does not sample (no sliders)."""
        config = self.predictor.config
        sampling = None
        if self.predictor.generative:
            sampling = {"sample_k": config.sample_k, "max_k": max(MAX_SAMPLES, config.sample_k),
                        "sample_time_steps": config.sample_time_steps, "max_steps": config.train_time_steps,
                        "sampler": self.predictor.sampler}
        return {"weights": str(self.predictor.weights), "evaluated_weights": self.predictor.evaluated_weights,
                "device": str(self.predictor.device), "sampling": sampling, "gaze3d": self.gaze3d is not None,
                "detector": self.finder.spec if self.finder is not None else None,
                "max_upload_mb": self.max_upload_mb, "max_video_frames": self.max_video_frames}

    def upload(self, name: str, data: bytes) -> dict:
        """Store an uploaded file, find out whether it is an image or a video, and detect the heads of an image."""
        if len(data) > self.max_upload_bytes:
            raise UserError(_too_large(len(data), self.max_upload_mb), HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        if not data:
            raise UserError(f"{name}: the file is empty")
        key = uuid.uuid4().hex[:12]
        folder = self.work_dir / key
        folder.mkdir()
        path = folder / "input" / _safe_name(name)  # its own folder: no name of the demo's files can collide
        path.parent.mkdir()
        path.write_bytes(data)
        try:
            upload = self._read_upload(key, name, folder, path)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)
            raise
        self._keep(upload)
        return self._upload_answer(upload)

    def predict(self, request: dict) -> dict:
        """Predict the people of an uploaded image. request: {"upload", "heads": [{"detected": index} (a detected
        head as it was found) or {"box": [x_min, y_min, x_max, y_max]} (pixels, drawn or edited on the page)],
        "sample_k", "sample_time_steps" (generative decoders)}. Returns the table rows (predict.py's), the overlay
        of each person and, with K > 1, each person's K sampled gaze points (normalised)."""
        upload = self._get_upload(request, "image")
        boxes = self._head_boxes(upload, request.get("heads"))
        predictor = self._predictor_for(request)
        with self.model_lock:
            upload.results += 1
            out = upload.folder / f"result{upload.results}"
            # The one before the previous: the page may still be loading the previous one's overlays.
            shutil.rmtree(upload.folder / f"result{upload.results - 2}", ignore_errors=True)
            try:
                summary = predict_image(predictor, upload.path, boxes, out, gaze3d=self.gaze3d)
            except EXPECTED_ERRORS as error:  # e.g. a box outside the image: named as the person uploaded it
                raise UserError(_renamed(error, upload.path, upload.name)) from None
            k = predictor.config.sample_k
            samples = (sample_points(predictor, read_image(upload.path), boxes, k) if predictor.generative and k > 1
                       else [])
        document = json.loads((out / "predictions.json").read_text())
        base = f"/files/{upload.key}/{out.name}"
        return {"rows": document["predictions"], "overlays": {row["person"]: f"{base}/{row['overlay']}"
                                                             for row in document["predictions"]},
                "samples": {box.person: points for box, points in zip(boxes, samples)},
                "settings": _settings(summary), "csv": f"{base}/predictions.csv", "json": f"{base}/predictions.json"}

    def start_video(self, request: dict) -> dict:
        """Start predicting an uploaded video in the background (heads detected and tracked in every selected frame,
        as predict.py --video); request: {"upload", "every_nth_frame", "sample_k", "sample_time_steps"}."""
        upload = self._get_upload(request, "video")
        if self.finder is None:
            raise UserError("a video needs a head detector, and this demo was started with --detector none")
        every = _integer(request.get("every_nth_frame", 1), "every n-th frame", 1)
        if upload.frames is not None and math.ceil(upload.frames / every) > self.max_video_frames:
            raise UserError(f"{upload.name}: {upload.frames} frames, every {every}: {math.ceil(upload.frames / every)} "
                            f"frames to predict, more than this page predicts ({self.max_video_frames}, "
                            "--max_video_frames): predict every n-th frame with n >= "
                            f"{math.ceil(upload.frames / self.max_video_frames)}, or use predict.py --video for long "
                            "videos")
        predictor = self._predictor_for(request)
        job = Job(uuid.uuid4().hex[:12], upload)
        with self.state_lock:
            self.jobs[job.key] = job
        threading.Thread(target=self._run_video, args=(job, predictor, every), daemon=True,
                         name=f"video {job.key}").start()
        return job.status()

    def job(self, key: str) -> dict:
        job = self.jobs.get(key)
        if job is None:
            raise UserError(f"no such job: {key}", HTTPStatus.NOT_FOUND)
        return job.status()

    def file(self, key: str, relative: str) -> Path:
        """A file of an upload's folder (its preview, overlays, tables, animation); nothing outside it."""
        upload = self.uploads.get(key)
        if upload is None:
            raise UserError(f"no such upload: {key} (uploads are kept while the demo runs, the last "
                            f"{KEPT_UPLOADS})", HTTPStatus.NOT_FOUND)
        path = (upload.folder / relative).resolve()
        if upload.folder.resolve() not in path.parents or not path.is_file():
            raise UserError(f"no such file: {relative}", HTTPStatus.NOT_FOUND)
        return path

    def close(self) -> None:
        shutil.rmtree(self.work_dir, ignore_errors=True)

    # --- inside ---------------------------------------------------------------------------------------------------

    def _read_upload(self, key: str, name: str, folder: Path, path: Path) -> Upload:
        """An image (read as predict.py reads it, heads detected) or else a video (its first frame decoded)."""
        image_error = None
        try:
            with Image.open(path) as opened:  # reads the header only
                animated = getattr(opened, "is_animated", False) and opened.format in ANIMATED_FORMATS
        except Image.DecompressionBombError as error:  # more pixels than Pillow opens
            raise UserError(f"{name}: {error}") from None
        except (UnidentifiedImageError, OSError, SyntaxError, EOFError) as error:
            animated, image_error = True, error
        if not animated:
            try:
                image = read_image(path)
            except (ValueError, Image.DecompressionBombError) as error:
                raise UserError(_renamed(error, path, name)) from None
            with self.model_lock:
                found = self.finder.find(image) if self.finder is not None else []
            spec = self.finder.spec if self.finder is not None else ""
            heads = [HeadBox(f"person{i}", d.box, f"{spec} detection #{i} in {name}", d.score)
                     for i, d in enumerate(found, 1)]
            image.save(folder / "preview.jpg", quality=92)  # what the server read (RGB), for the page's editor
            return Upload(key, name, folder, path, "image", image.width, image.height, heads)
        try:
            info = video_info(path)
            first = next(iter(video_frames(path)), None)
        except ValueError as error:
            if image_error is not None and path.suffix.lower() not in VIDEO_SUFFIXES:
                raise UserError(f"{name}: not an image or a video this page can read (images: JPEG, PNG, BMP, "
                                "WebP, TIFF, ...; videos: MP4, MOV, AVI, MKV, WebM, GIF, ...)") from None
            raise UserError(_renamed(error, path, name)) from None
        if first is None:
            raise UserError(f"{name}: the video holds no frame that can be decoded")
        first[1].save(folder / "preview.jpg", quality=92)
        return Upload(key, name, folder, path, "video", info.width, info.height, frames=info.frames, fps=info.fps)

    def _upload_answer(self, upload: Upload) -> dict:
        return {"upload": upload.key, "name": upload.name, "kind": upload.kind, "width": upload.width,
                "height": upload.height, "preview": f"/files/{upload.key}/preview.jpg",
                "heads": [{"box": [float(v) for v in h.box], "score": h.score} for h in upload.heads],
                "frames": upload.frames, "fps": upload.fps}

    def _keep(self, upload: Upload) -> None:
        with self.state_lock:
            self.uploads[upload.key] = upload
            busy = {job.upload.key for job in self.jobs.values() if job.state == "running"}
            for key in [key for key in self.uploads if key not in busy][:-KEPT_UPLOADS]:
                shutil.rmtree(self.uploads.pop(key).folder, ignore_errors=True)

    def _get_upload(self, request: dict, kind: str) -> Upload:
        if not isinstance(request, dict):
            raise UserError("expected a JSON object")
        upload = self.uploads.get(str(request.get("upload")))
        if upload is None:
            raise UserError("that upload is no longer here (the demo keeps the last uploads while it runs): "
                            "upload the file again")
        if upload.kind != kind:
            raise UserError(f"{upload.name} is {'an' if upload.kind == 'image' else 'a'} {upload.kind}, not "
                            f"{'an' if kind == 'image' else 'a'} {kind}")
        return upload

    def _head_boxes(self, upload: Upload, heads) -> list[HeadBox]:
        if not isinstance(heads, list) or not heads:
            raise UserError("no head box: draw a box around a head on the image (the detector found "
                            f"{len(upload.heads)})")
        boxes = []
        for i, head in enumerate(heads, 1):
            person = f"person{i}"
            if isinstance(head, dict) and "detected" in head:
                index = _integer(head["detected"], f"head #{i}", 0)
                if index >= len(upload.heads):
                    raise UserError(f"head #{i}: detection {index} does not exist ({len(upload.heads)} found)")
                boxes.append(dataclasses.replace(upload.heads[index], person=person))
            elif isinstance(head, dict) and isinstance(head.get("box"), list) and len(head["box"]) == 4:
                try:
                    box = np.array([float(v) for v in head["box"]])
                except (TypeError, ValueError):
                    raise UserError(f"head #{i}: the box should be four numbers (pixels), "
                                    f"found {head['box']}") from None
                if not np.isfinite(box).all():
                    raise UserError(f"head #{i}: the box should be four finite numbers (pixels), found {head['box']}")
                boxes.append(HeadBox(person, box, f"head box #{i} drawn on the page", None))
            else:
                raise UserError(f"head #{i}: expected {{'detected': index}} or {{'box': [x_min, y_min, x_max, y_max]}}")
        return boxes

    def _predictor_for(self, request: dict) -> Predictor:
        """The predictor with the page's K and number of steps (a sampling decoder), built once per pair."""
        asked = {name: request[name] for name in ("sample_k", "sample_time_steps") if request.get(name) is not None}
        if not asked:
            return self.predictor
        if not self.predictor.generative:
            raise UserError("this model's heatmap decoder does not sample: K and the number of steps do not apply")
        config = self.predictor.config
        k = _integer(asked.get("sample_k", config.sample_k), "K (samples)", 1, max(MAX_SAMPLES, config.sample_k))
        steps = _integer(asked.get("sample_time_steps", config.sample_time_steps), "steps", 1,
                         config.train_time_steps)
        if (k, steps) == (config.sample_k, config.sample_time_steps):
            return self.predictor
        with self.state_lock:
            if (k, steps) not in self._sampling:
                try:
                    self._sampling[(k, steps)] = self.predictor.with_options(sample_k=k, sample_time_steps=steps)
                except ConfigError as error:
                    raise UserError(f"K = {k}, {steps} steps: {error}") from None
                while len(self._sampling) > KEPT_SAMPLERS:
                    self._sampling.popitem(last=False)
            self._sampling.move_to_end((k, steps))
            return self._sampling[(k, steps)]

    def _run_video(self, job: Job, predictor: Predictor, every: int) -> None:
        upload = job.upload
        try:
            with self.model_lock:
                upload.results += 1
                out = upload.folder / f"result{upload.results}"
                summary = predict_sequence(predictor, out, video=upload.path, finder=self.finder, gaze3d=self.gaze3d,
                                           tracker=IoUTracker(*self.tracker_settings), animation="mp4",
                                           every_nth_frame=every, overlays=False, progress=job.report)
            document = json.loads((out / "predictions.json").read_text())
            base = f"/files/{upload.key}/{out.name}"
            job.result = {"rows": document["predictions"], "people": document["people"],
                          "animation": f"{base}/{document['animation']}", "settings": _settings(summary),
                          "csv": f"{base}/predictions.csv", "json": f"{base}/predictions.json"}
            job.state = "done"
        except EXPECTED_ERRORS as error:
            job.error, job.state = _renamed(error, upload.path, upload.name), "failed"
        except Exception as error:  # noqa: BLE001  (a bug: one line on the page, the traceback on the terminal)
            traceback.print_exc()
            job.error, job.state = _internal(error), "failed"


def sample_points(predictor: Predictor, image: Image.Image, boxes: list[HeadBox], k: int) -> list[list[list[float]]]:
    """Each person's K sampled gaze points (normalised x, y: the argmax of each sampled heatmap): every person
    repeated K times in one batch with sample_k = 1, so the sampler draws the same B x K noise as the K-sample
    prediction and these are the samples whose mean is its heatmap (tests/test_web_demo.py checks it)."""
    single = predictor.with_options(sample_k=1)
    repeated = [box for box in boxes for _ in range(k)]
    drawn = single.predict(image, repeated)
    return [[list(p.gaze_point) for p in drawn[i * k:(i + 1) * k]] for i in range(len(boxes))]


def _settings(summary: dict) -> dict:
    return {key: summary.get(key) for key in ("sampler", "sample_time_steps", "sample_k", "seed", "device",
                                              "evaluated_weights", "frames", "people")}


def _integer(value, what: str, low: int, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise UserError(f"{what}: expected a whole number, found {value!r}")
    try:
        number = int(str(value))
    except ValueError:
        raise UserError(f"{what}: expected a whole number, found {value!r}") from None
    if number < low or (high is not None and number > high):
        raise UserError(f"{what}: expected {low} to {high}, found {number}" if high is not None
                        else f"{what}: expected at least {low}, found {number}")
    return number


def _safe_name(name: str) -> str:
    """The upload's file name without folders or characters a file system may refuse (kept: letters, digits, . _ -)."""
    base = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name.replace("\\", "/")).name).strip("._") or "upload"
    return base[-100:]


def _renamed(error: BaseException, path: Path, name: str) -> str:
    """The error's message with the working copy's path replaced by the name the person uploaded."""
    return str(error).replace(str(path), name)


def _too_large(size: int, limit_mb: float) -> str:
    return (f"the file is {size / 1024 / 1024:.1f} MB, more than this page accepts ({limit_mb:g} MB, "
            "--max_upload_mb); use a smaller file (a shorter video), or predict.py")


def _internal(error: BaseException) -> str:
    first = (str(error).strip().splitlines() or [""])[0][:300]
    return f"internal error ({type(error).__name__}: {first}); the terminal running the demo shows the details"


class DemoServer(ThreadingHTTPServer):
    """The HTTP server of a GazeDemo (one thread per request)."""

    daemon_threads = True

    def __init__(self, demo: GazeDemo, host: str = "127.0.0.1", port: int = DEFAULT_PORT, quiet: bool = False):
        self.demo, self.quiet = demo, quiet
        super().__init__((host, port), _Handler)

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{'127.0.0.1' if host in ('0.0.0.0', '') else host}:{port}/"

    def serve_in_background(self) -> threading.Thread:
        thread = threading.Thread(target=self.serve_forever, daemon=True, name="gaze demo server")
        thread.start()
        return thread


class _Handler(BaseHTTPRequestHandler):
    server_version = "GazeDemo/1"
    protocol_version = "HTTP/1.1"

    @property
    def demo(self) -> GazeDemo:
        return self.server.demo

    def do_GET(self) -> None:  # noqa: N802  (http.server's name)
        path = urlparse(self.path).path
        self._answer(lambda: self._get(path))

    def do_POST(self) -> None:  # noqa: N802
        url = urlparse(self.path)
        self._answer(lambda: self._post(url.path, parse_qs(url.query)))

    def _get(self, path: str):
        if path in PAGES:
            name, content_type = PAGES[path]
            return (WEB / name).read_bytes(), content_type
        if path == "/api/info":
            return self.demo.info()
        if path.startswith("/api/jobs/"):
            return self.demo.job(path[len("/api/jobs/"):])
        if path.startswith("/files/"):
            key, _, relative = path[len("/files/"):].partition("/")
            file = self.demo.file(key, unquote(relative))
            return file.read_bytes(), mimetypes.guess_type(file.name)[0] or "application/octet-stream"
        if path == "/favicon.ico":
            return b"", "image/x-icon"
        raise UserError(f"no such page: {path}", HTTPStatus.NOT_FOUND)

    def _post(self, path: str, query: dict):
        length = int(self.headers.get("Content-Length") or 0)
        if path == "/api/upload":
            name = query.get("name", ["upload"])[0]
            if length > self.demo.max_upload_bytes:
                self._discard(length)  # read, not kept: a client still sending would not see the message
                raise UserError(_too_large(length, self.demo.max_upload_mb), HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
            return self.demo.upload(name, self.rfile.read(length))
        if length > 1024 * 1024:
            self._discard(length)
            raise UserError("request too large", HTTPStatus.REQUEST_ENTITY_TOO_LARGE)
        try:
            request = json.loads(self.rfile.read(length) or b"{}")
        except ValueError as error:
            raise UserError(f"the request is not JSON ({error})") from None
        if path == "/api/predict":
            return self.demo.predict(request)
        if path == "/api/video":
            return self.demo.start_video(request)
        raise UserError(f"no such action: {path}", HTTPStatus.NOT_FOUND)

    def _discard(self, length: int) -> None:
        while length > 0:
            chunk = self.rfile.read(min(length, 1 << 20))
            if not chunk:
                break
            length -= len(chunk)

    def _answer(self, action) -> None:
        """Run `action`; a dict is sent as JSON, (bytes, type) as they are; every error becomes {"error": message}."""
        try:
            result = action()
            status = HTTPStatus.OK
        except UserError as error:
            result, status = {"error": str(error)}, error.status
        except EXPECTED_ERRORS as error:
            result, status = {"error": str(error)}, HTTPStatus.BAD_REQUEST
        except Exception as error:  # noqa: BLE001  (a bug: one line on the page, the traceback on the terminal)
            traceback.print_exc()
            result, status = {"error": _internal(error)}, HTTPStatus.INTERNAL_SERVER_ERROR
        if isinstance(result, dict):
            body, content_type = json.dumps(result).encode(), "application/json"
        else:
            body, content_type = result
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002  (http.server's signature)
        if not self.server.quiet:
            super().log_message(format, *args)


def build_parser() -> argparse.ArgumentParser:
    import predict  # the command line's flags, so the page predicts as predict.py does

    defaults = predict.build_parser()
    parser = argparse.ArgumentParser(prog="python -m inference.app", description=__doc__.split("\n\n")[0])
    parser.add_argument("--weights", required=True,
                        help="checkpoint, .safetensors export, Hub-style folder or hf-hub:OWNER/NAME (as predict.py)")
    parser.add_argument("--config", nargs="+", default=(), metavar="YAML",
                        help="YAML file(s) of a weight file that stores no configuration (as predict.py)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port to serve on [default: {DEFAULT_PORT}]")
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to serve on; 0.0.0.0 makes the page reachable from other machines "
                             "[default: 127.0.0.1, this machine only]")
    parser.add_argument("--gaze360_weights", metavar="FILE", help="a Gaze360 checkpoint: adds the 3D gaze arrow")
    parser.add_argument("--detector", default=defaults.get_default("detector"), metavar="mtcnn|yolo:PATH|none",
                        help="head detector, as predict.py's; none: boxes are only drawn on the page [default: mtcnn]")
    for name in ("min_head_score", "min_head_size", "detect_width", "track_min_iou", "track_max_missed"):
        kind = type(defaults.get_default(name))
        parser.add_argument(f"--{name}", type=kind, default=defaults.get_default(name),
                            help=f"as predict.py's --{name} [default: {defaults.get_default(name)}]")
    parser.add_argument("--max_upload_mb", type=float, default=200.0,
                        help="largest file the page accepts, in MB [default: 200]")
    parser.add_argument("--max_video_frames", type=int, default=300,
                        help="most frames of a video the page predicts (after every n-th) [default: 300]")
    for name in predict.OVERRIDES:
        action = next(a for a in defaults._actions if a.dest == name)
        parser.add_argument(f"--{name}", choices=action.choices, default=None, help=action.help)
    return parser


def main(argv: list[str] | None = None) -> int:
    import predict

    args = build_parser().parse_args(argv)
    overrides = {name: getattr(args, name) for name in predict.OVERRIDES if getattr(args, name) is not None}
    try:
        predictor = Predictor(args.weights, args.config, overrides)
        finder = None
        if args.detector != "none":
            from inference.detection import build_detector

            finder = HeadFinder(build_detector(args.detector, str(predictor.device)), args.detector,
                                args.min_head_score, args.min_head_size, args.detect_width)
        gaze3d = None
        if args.gaze360_weights:
            from inference.gaze3d import Gaze3DEstimator

            gaze3d = Gaze3DEstimator(args.gaze360_weights, predictor.device)
        demo = GazeDemo(predictor, finder, gaze3d, (args.track_min_iou, args.track_max_missed), args.max_upload_mb,
                        args.max_video_frames)
        server = DemoServer(demo, args.host, args.port)
    except EXPECTED_ERRORS + (OSError,) as error:  # OSError: the port is taken
        print(f"python -m inference.app: error: {error}", file=sys.stderr)
        return 2
    print(f"serving the gaze-following demo of {args.weights} at {server.url} (Ctrl-C stops it)", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        demo.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
