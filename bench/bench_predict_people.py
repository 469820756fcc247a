"""Frames per second of prediction for 1, 2 and 5 people per frame on the demo model (configs/demo with random
weights: speed does not depend on their values), all people of a frame in one batch, against the same people
predicted one at a time; plus the MTCNN head detection per frame. `python -m bench.bench_predict_people [--device cpu] [--repeats 5]`.

Timings are interleaved (every configuration once per round) so that a busy machine slows them alike; the figures
are the median over rounds.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from engine.checkpoint import save_checkpoint
from engine.config import load_config
from inference.predictor import Predictor
from inference.sources import HeadBox
from models.build import get_model

ROOT = Path(__file__).resolve().parents[1]
DEMO_FRAME = ROOT.parent / "shared" / "data" / "demo_frames" / "00002575.jpg"
BOXES = [[553, 71, 752, 275], [1093, 33, 1347, 299], [100, 300, 260, 470], [1500, 300, 1650, 460],
         [800, 500, 950, 660]]


def demo_predictor(directory: Path, device: str, **overrides) -> Predictor:
    """A Predictor of the demo configuration with random weights (the initialisation plus N(0, 0.02) noise, so that
    the zero-initialised output layers give non-zero maps), saved as a checkpoint would be."""
    config = load_config([ROOT / "configs/demo/diffusion.yaml", ROOT / "configs/demo/gaze.yaml"], {"device": device})
    torch.manual_seed(0)
    model = get_model(config)
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(torch.randn_like(parameter) * 0.02)
    path = directory / "demo_random.pt"
    save_checkpoint(path, {"model": model.state_dict(), "config": config.to_dict()})
    return Predictor(path, overrides={"device": device, **overrides})


def frame_image() -> Image.Image:
    if DEMO_FRAME.is_file():
        return Image.open(DEMO_FRAME).convert("RGB")
    return Image.fromarray(np.random.default_rng(0).integers(0, 255, (1080, 1920, 3), dtype=np.uint8))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads [default: 1]")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = frame_image()
    with tempfile.TemporaryDirectory() as directory:
        predictor = demo_predictor(Path(directory), args.device)
    people = [HeadBox(f"person{i}", np.array(box, dtype=float), "bench") for i, box in enumerate(BOXES, 1)]
    detector = None
    try:
        from inference.detection import MTCNNHeadDetector

        detector = MTCNNHeadDetector(args.device)
    except RuntimeError:
        pass
    cases = {f"{n} {'person' if n == 1 else 'people'}, one batch": (lambda n=n: predictor.predict(image, people[:n]))
             for n in (1, 2, 5)}
    cases.update({f"{n} people, one at a time": (lambda n=n: [predictor.predict(image, [p]) for p in people[:n]])
                  for n in (2, 5)})
    if detector is not None:
        from inference.pipeline import HeadFinder

        small = HeadFinder(detector, "mtcnn", detect_width=960)
        cases["MTCNN head detection (1920x1080 frame)"] = lambda: detector.detect(image)
        cases["MTCNN head detection, --detect_width 960"] = lambda: small.find(image)
    for run in cases.values():
        run()  # warm-up
    times = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, run in cases.items():
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            started = time.perf_counter()
            run()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - started)
    config = predictor.config
    print(f"demo model ({sum(p.numel() for p in predictor.model.parameters()) / 1e6:.1f} M parameters, "
          f"{predictor.sampler} {config.sample_time_steps} steps, K = {config.sample_k}, input {config.input_size}), "
          f"device {args.device}, {args.threads} thread(s), median of {args.repeats} interleaved rounds")
    for name, values in times.items():
        seconds = float(np.median(values))
        print(f"{name:42s} {seconds * 1e3:8.1f} ms per frame  {1 / seconds:6.2f} frames/s")


if __name__ == "__main__":
    main()
