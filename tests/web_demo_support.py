"""Helpers of the web demo's tests: a tiny trained checkpoint, the demo served on a free local port, HTTP calls, and
predict.py's table for the same input."""
from __future__ import annotations

import csv
import json
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import predict
from engine.train import run
from inference.app import DemoServer, GazeDemo
from inference.detection import build_detector
from inference.pipeline import HeadFinder
from inference.predictor import Predictor
from tests.tiny_runs import make_tiny_dataset, tiny_config


def train_tiny(root: Path) -> Path:
    """The end-to-end test's tiny model trained one epoch on synthetic images; returns its last.pt."""
    data = make_tiny_dataset(root / "data", n_train_images=4, n_test_images=1)
    run(tiny_config(data, root / "runs", "tiny", "--epochs", "1"))
    return root / "runs" / "tiny" / "last.pt"


@contextmanager
def serving(weights: Path, work_dir: Path, detector: bool = True, **limits):
    """The demo of `weights` (MTCNN heads as predict.py's defaults) served on 127.0.0.1 at a free port."""
    defaults = predict.build_parser()
    predictor = Predictor(weights, overrides={"device": "cpu"})
    finder = HeadFinder(build_detector("mtcnn"), "mtcnn", defaults.get_default("min_head_score"),
                        defaults.get_default("min_head_size")) if detector else None
    demo = GazeDemo(predictor, finder, work_dir=work_dir, **limits)
    server = DemoServer(demo, "127.0.0.1", 0, quiet=True)
    server.serve_in_background()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        demo.close()


def call(server: DemoServer, path: str, body: bytes | dict | None = None,
         headers: dict | None = None) -> tuple[int, dict | bytes]:
    """(HTTP status, decoded JSON or bytes) of a GET (no body) or POST to the demo."""
    data = json.dumps(body).encode() if isinstance(body, dict) else body
    request = urllib.request.Request(server.url.rstrip("/") + path, data=data, headers=headers or {},
                                     method="GET" if body is None else "POST")
    try:
        with urllib.request.urlopen(request, timeout=300) as response:
            status, payload, kind = response.status, response.read(), response.headers.get("Content-Type", "")
    except urllib.error.HTTPError as error:
        status, payload, kind = error.code, error.read(), error.headers.get("Content-Type", "")
    return status, json.loads(payload) if kind.startswith("application/json") else payload


def predict_py_rows(out: Path, *args) -> list[dict]:
    """predict.py's predictions.csv rows (strings) for `args`, run in-process on the CPU."""
    assert predict.main([*map(str, args), "--out", str(out), "--device", "cpu"]) == 0
    with open(out / "predictions.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def same_value(shown: str, written: str) -> bool:
    """A value of the page (JavaScript's String(number), or "" for none) equals predict.py's CSV text: numbers as
    the same double (both print the shortest text that reads back exactly), the rest as text."""
    try:
        return float(shown) == float(written)
    except ValueError:
        return shown == written
