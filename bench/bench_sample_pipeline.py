"""Per-core speed of the training sample pipeline against the JPEG-decode floor, side by side in one process.

Times, interleaved over rounds with one thread (medians of the rounds; CPU time of the thread, so that time spent
waiting for a core on a shared machine is not counted, and wall time beside it): decoding the dataset's JPEGs alone with PIL
and with torchvision.io.decode_jpeg (the floor: no sample can be built faster than its image is decoded), the
training sample with augmentation (`dataset[(epoch, index)]`) and the test sample (no augmentation). With
`--baseline PATH` (a checkout of another commit, e.g. `git worktree add /tmp/before 4c050ef`) that checkout's
training sample is timed in the same rounds too. Run from the project root:

    python -m datasets.synthetic --root data/gazefollow_synthetic   # once (`make data`)
    python -m bench.bench_sample_pipeline [--root data/gazefollow_synthetic] [--input_size 224 --output_size 64]
        [--upscale 2]   # on copies of the training images enlarged 2x (240-400 px -> GazeFollow's typical 640 x 480)
        [--real_frames]   # on the six real 1920 x 1080 frames of ../shared/data/demo_frames and their heads
"""
from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from PIL import Image
from torchvision.io import decode_jpeg

from datasets.gazefollow import GazeFollow


def baseline_dataset_class(checkout: Path):
    """GazeFollow of another checkout, imported beside this one's (its `datasets` package under its own modules)."""
    ours = {name: sys.modules.pop(name) for name in list(sys.modules) if name.split(".")[0] == "datasets"}
    sys.path.insert(0, str(checkout))
    try:
        return importlib.import_module("datasets.gazefollow").GazeFollow
    finally:
        sys.path.remove(str(checkout))
        for name in [name for name in sys.modules if name.split(".")[0] == "datasets"]:
            del sys.modules[name]
        sys.modules.update(ours)


def upscaled_copy(root: Path, factor: float, count: int, target: Path) -> Path:
    """The first `count` images of each split of a GazeFollow-format dataset enlarged `factor` times (bicubic, JPEG
    quality 90), with the annotations' pixel head boxes (fields 11-14 of both formats) scaled to match; the other
    coordinates are normalised."""
    for name in ("train_annotations_release.txt", "test_annotations_release.txt"):
        lines = (root / name).read_text().splitlines()
        kept = sorted({line.split(",")[0] for line in lines})[:count]
        for relative in kept:
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            with Image.open(root / relative) as image:
                size = (round(image.width * factor), round(image.height * factor))
                image.convert("RGB").resize(size, Image.Resampling.BICUBIC).save(target / relative, quality=90)
        rows = []
        for line in lines:
            fields = line.split(",")
            if fields[0] in kept:
                fields[10:14] = [f"{float(v) * factor:.1f}" for v in fields[10:14]]
                rows.append(",".join(fields))
        (target / name).write_text("\n".join(rows) + "\n")
    return target


def real_frames_dataset(frames: Path, target: Path) -> Path:
    """A GazeFollow-format dataset (both splits) on the real 1920 x 1080 video frames of ../shared/data/demo_frames:
    each frame's two annotated heads (person1.txt, person2.txt: `frame,xmin,ymin,xmax,ymax` in pixels), each looking
    at the other's head centre. Only the coordinates are made up; the JPEGs are the real camera frames."""
    boxes = {}
    for person in ("person1.txt", "person2.txt"):
        for line in (frames / person).read_text().split():
            name, *box = line.split(",")
            boxes.setdefault(name, []).append([float(v) for v in box])
    rows = {"train": [], "test": []}
    for name in sorted(path.name for path in frames.glob("*.jpg")):
        if len(boxes.get(name, [])) != 2:
            continue
        with Image.open(frames / name) as image:
            width, height = image.size
        (target / "frames").mkdir(parents=True, exist_ok=True)
        (target / "frames" / name).write_bytes((frames / name).read_bytes())
        for me, other in ((0, 1), (1, 0)):
            head, seen = boxes[name][me], boxes[name][other]
            eye = ((head[0] + head[2]) / 2 / width, (head[1] + head[3]) / 2 / height)
            gaze = ((seen[0] + seen[2]) / 2 / width, (seen[1] + seen[3]) / 2 / height)
            fields = [f"frames/{name}", str(me + 1), "0.1", "0.1", "0.5", "0.8", f"{eye[0]:.5f}", f"{eye[1]:.5f}",
                      f"{gaze[0]:.5f}", f"{gaze[1]:.5f}", *(f"{v:.1f}" for v in head)]
            rows["train"].append(",".join([*fields, "1", "real", name]))
            rows["test"].append(",".join([*fields, "real", name]))
    for split, lines in rows.items():
        (target / f"{split}_annotations_release.txt").write_text("\n".join(lines) + "\n")
    return target


def main(root: Path, input_size: int, output_size: int, count: int, rounds: int, baseline: Path | None,
         upscale: float = 1.0, real_frames: Path | None = None) -> dict:
    if upscale != 1.0 or real_frames is not None:
        with tempfile.TemporaryDirectory() as folder:
            copy = (real_frames_dataset(real_frames, Path(folder)) if real_frames is not None
                    else upscaled_copy(root, upscale, count, Path(folder)))
            return main(copy, input_size, output_size, count, rounds, baseline)
    torch.set_num_threads(1)  # per-core figures; other threads on a shared machine only wait
    train = GazeFollow(root, "train", input_size=input_size, output_size=output_size, random_sigma=(2.0, 4.0))
    test = GazeFollow(root, "test", input_size=input_size, output_size=output_size)
    indices = range(min(count, len(train)))
    paths = [train.image_path(str(train._paths[i])) for i in indices]  # one decode per sample, as the samples do

    def pil_decode(epoch):
        for path in paths:
            with Image.open(path) as image:
                image.convert("RGB")

    def torchvision_decode(epoch):
        for path in paths:
            decode_jpeg(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8))

    def sampler(dataset):
        def run(epoch):
            for i in indices:  # each sample dropped once built, as a loader worker drops it once collated
                dataset[(epoch, i)]
        return run

    def test_samples(epoch):
        for i in range(min(count, len(test))):
            test[(0, i)]

    runs = {"decode (PIL)": pil_decode, "decode (torchvision)": torchvision_decode,
            "training sample (augmented)": sampler(train),
            "test sample": test_samples}
    if baseline is not None:
        before = baseline_dataset_class(baseline)(root, "train", input_size=input_size, output_size=output_size,
                                                  random_sigma=(2.0, 4.0))
        runs[f"training sample, {baseline.name}"] = sampler(before)
    for run in runs.values():
        run(0)  # warm the file cache and the imports
    cpu, wall = {name: [] for name in runs}, {name: [] for name in runs}
    for epoch in range(rounds):  # a new epoch each round: other augmentations, same work on average for each side
        for name, run in runs.items():
            started, started_cpu = time.perf_counter(), time.thread_time()
            run(epoch)
            cpu[name].append(time.thread_time() - started_cpu)
            wall[name].append(time.perf_counter() - started)
    images = {name: len(indices) for name in runs} | {"test sample": min(count, len(test))}
    per_second = {name: images[name] / statistics.median(values) for name, values in cpu.items()}
    wall_per_second = {name: images[name] / statistics.median(values) for name, values in wall.items()}
    floor, pil = max(per_second["decode (PIL)"], per_second["decode (torchvision)"]), per_second["decode (PIL)"]
    print(f"{root}: {len(indices)} images per round, {rounds} rounds interleaved, {input_size} px inputs, "
          f"{output_size}^2 heatmaps, 1 thread; ratios = images per CPU second / the faster decode's, and / PIL's")
    print("| what | images per CPU second | ratio to the faster decode | ratio to PIL's decode "
          "| images per wall second |\n|---|---|---|---|---|")
    for name, rate in per_second.items():
        print(f"| {name} | {rate:.0f} | {rate / floor:.2f} | {rate / pil:.2f} | {wall_per_second[name]:.0f} |")
    return per_second


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path("data/gazefollow_synthetic"))
    parser.add_argument("--input_size", type=int, default=224)
    parser.add_argument("--output_size", type=int, default=64)
    parser.add_argument("--count", type=int, default=150, help="images per round")
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--baseline", type=Path, help="a checkout of another commit to time side by side")
    parser.add_argument("--upscale", type=float, default=1.0, help="time copies of the images enlarged this much")
    parser.add_argument("--real_frames", type=Path, nargs="?", const=Path("../shared/data/demo_frames"),
                        help="time the real 1920 x 1080 video frames of this folder (default "
                             "../shared/data/demo_frames) with their annotated heads instead of the synthetic images")
    args = parser.parse_args()
    main(args.root, args.input_size, args.output_size, args.count, args.rounds, args.baseline, args.upscale,
         args.real_frames)
