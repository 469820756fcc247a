"""What the data validation before training costs: a GazeFollow-format split of 10,000 rows over 2,000 JPEG images of
640 x 480 (written to a temporary folder), side by side with decoding those images once (the least one epoch does).

Measured, interleaved over `--repeats` rounds: reading the annotation file with its row checks; the image pass
(`datasets.validation.validate_splits`: every header, the end-of-file marker, the size-dependent checks) with one
thread and with the default thread pool; and a full decode of every image (PIL, RGB). Run
`python -m bench.bench_validation [--rows 10000 --images 2000 --repeats 3]` from the project root. The images were
just written, so they are in the page cache: on a cold network file system the header reads cost more (one small
read at the start and one at the end of each file), and so does the decode.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from datasets.gazefollow import GazeFollow
from datasets.validation import gaze_target_split, validate_splits


def write_split(root: Path, n_rows: int, n_images: int, size: tuple[int, int], seed: int = 0) -> None:
    """n_images noisy JPEGs (about the size of real photos of that resolution) and n_rows train rows over them."""
    rng = np.random.default_rng(seed)
    width, height = size
    base = rng.integers(0, 256, size=(height // 8, width // 8, 3), dtype=np.uint8)
    smooth = np.asarray(Image.fromarray(base).resize(size, Image.Resampling.BICUBIC))
    lines = []
    for index in range(n_images):
        relative = f"train/{index // 1000:08d}/{index:08d}.jpg"
        (root / relative).parent.mkdir(parents=True, exist_ok=True)
        noise = rng.integers(-20, 21, size=smooth.shape)
        Image.fromarray(np.clip(smooth.astype(int) + noise, 0, 255).astype(np.uint8)).save(root / relative, quality=90)
    for row in range(n_rows):
        relative = f"train/{row % n_images // 1000:08d}/{row % n_images:08d}.jpg"
        eye = rng.uniform(0.2, 0.8, 2)
        gaze = rng.uniform(0.05, 0.95, 2)
        box = np.concatenate([eye * size - 20, eye * size + 20])
        lines.append(",".join([relative, str(row), "0.1", "0.1", "0.5", "0.8", *(f"{v:.5f}" for v in (*eye, *gaze)),
                               *(f"{v:.1f}" for v in box), "1", "bench", "x.jpg"]))
    (root / "train_annotations_release.txt").write_text("\n".join(lines) + "\n")


def decode_all(paths: list[Path]) -> None:
    for path in paths:
        with Image.open(path) as image:
            image.convert("RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--images", type=int, default=2_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        write_split(root, args.rows, args.images, (640, 480))
        images = sorted(root.rglob("*.jpg"))
        times = {"rows": [], "pass_1_thread": [], "pass_pool": [], "decode": []}
        for _ in range(args.repeats):  # interleaved, so a change of machine load hits every measurement
            started = time.perf_counter()
            dataset = GazeFollow(root, "train", input_size=64, output_size=32)
            times["rows"].append(time.perf_counter() - started)
            for name, workers in (("pass_1_thread", 1), ("pass_pool", None)):
                started = time.perf_counter()
                validate_splits([gaze_target_split("train", dataset)], progress=False, workers=workers)
                times[name].append(time.perf_counter() - started)
            started = time.perf_counter()
            decode_all(images)
            times["decode"].append(time.perf_counter() - started)
        per_thousand = {name: 1000 * float(np.median(values)) / args.images for name, values in times.items()}
        print(f"{args.rows} rows over {args.images} JPEG images of 640 x 480, median of {args.repeats} interleaved "
              "rounds, seconds per 1,000 images:")
        print(f"  annotation rows read and checked: {per_thousand['rows']:.3f} "
              f"({float(np.median(times['rows'])):.2f} s for {args.rows} rows)")
        print(f"  image pass, 1 thread:            {per_thousand['pass_1_thread']:.3f}")
        print(f"  image pass, default thread pool: {per_thousand['pass_pool']:.3f}")
        print(f"  decoding every image once:       {per_thousand['decode']:.3f} "
              f"(image pass / decode = {per_thousand['pass_pool'] / per_thousand['decode']:.3f})")


if __name__ == "__main__":
    main()
