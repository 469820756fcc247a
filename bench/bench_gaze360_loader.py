"""The Gaze360 multi-crop loader: one JPEG decode per frame for all of its crops (gaze360.data.HeadCropDataset)
against one decode per image of the sequence (the original MultiZoomGaze loaders' design: each crop transform
opens the file again), side by side and interleaved, in images per second of the sample pipeline (no model).

`python -m bench.bench_gaze360_loader [--root DIR]` writes a small synthetic Gaze360 set (head crops of 224-320 px,
the size range of real Gaze360 crops) unless --root holds one, then times the layouts of StaticSCLstmSym (one frame,
7 crops), SeqSCLstmSym (7 frames, frame i crop i) and this project's every-crop-of-every-frame layout (7 x 4). It
checks both sides give identical tensors. A shared machine slows both sides alike; read the ratio. The last columns
give the decode floor: JPEG decoding alone, and the images/s it would allow for the layout (images per frame x
frames/s).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from engine.config import load_config
from gaze360.build import make_dataset
from gaze360.options import GAZE360
from gaze360.synthetic import write_gaze360

LAYOUTS = {
    "StaticSCLstmSym: 1 frame x 7 crops": dict(num_frames=1, crop_sizes=[224, 200, 175, 150], symmetric_crops=True),
    "SeqSCLstmSym: 7 frames, frame i crop i": dict(num_frames=7, crop_sizes=[224, 200, 175, 150],
                                                   symmetric_crops=True),
    "every crop of every frame: 7 x 4": dict(num_frames=7, crop_sizes=[224, 200, 175, 150], frame_crops="all"),
}


def per_image_decoding(dataset):
    """The same dataset, but every image of the sequence decodes its frame again (the original's loaders)."""
    class PerImage(type(dataset)):
        def images(self, index, rng):
            decode = super().decode
            plan = self.plan
            outputs = []
            for position in range(len(plan)):  # one full pass per image, keeping only that image
                self.plan = [plan[position]]
                self.decode = decode
                outputs.append(super().images(index, rng)[0])
            self.plan = plan
            return torch.stack(outputs)

    copy = object.__new__(PerImage)
    copy.__dict__.update(dataset.__dict__)
    return copy


def images_per_second(dataset, count: int) -> tuple[float, torch.Tensor]:
    started = time.perf_counter()
    for index in range(count):
        images = dataset[index % len(dataset)]["images"]
    return count * images.shape[0] / (time.perf_counter() - started), images


def decode_floor(dataset, count: int) -> float:
    """Frames per second of JPEG decoding alone (PIL open + RGB), over the frames the timed samples read."""
    files = [f for index in range(count) for f in dataset.frame_files[index % len(dataset)]]
    started = time.perf_counter()
    for path in files:
        dataset.decode(path)
    return len(files) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--root", default=None, help="a Gaze360-format folder (default: a temporary synthetic one)")
    parser.add_argument("--samples", type=int, default=12, help="samples per timed pass")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(args.root or scratch)
        if not (root / "test.txt").is_file():
            write_gaze360(root, seed=0, tracks={"train": 1, "validation": 1, "test": 3}, frames_per_track=10,
                          sizes=(224, 320))
        print("layout | one decode per image (images/s) | one decode per frame (images/s) | ratio | "
              "decode alone (frames/s) | floor for this layout (images/s)")
        print("---|---|---|---|---|---")
        for name, layout in LAYOUTS.items():
            config = load_config([], {"dataset_dir": str(root), "device": "cpu", **layout}, GAZE360)
            once = make_dataset(config, "test", train=False)
            again = per_image_decoding(once)
            images_per_second(once, 2)  # warm the file cache
            rates = {"again": [], "once": [], "floor": []}
            for _ in range(args.rounds):
                for side, dataset in (("again", again), ("once", once)):
                    rate, images = images_per_second(dataset, args.samples)
                    rates[side].append(rate)
                    if side == "again":
                        reference = images
                    else:
                        assert torch.equal(images, reference)
                rates["floor"].append(decode_floor(once, args.samples))
            again_rate, once_rate, floor = (sum(rates[s]) / len(rates[s]) for s in ("again", "once", "floor"))
            per_frame = len(once.plan) / len({f for f, _ in once.plan})  # images per decoded frame
            print(f"{name} | {again_rate:.0f} | {once_rate:.0f} | {once_rate / again_rate:.2f} | {floor:.0f} | "
                  f"{floor * per_frame:.0f}")


if __name__ == "__main__":
    main()
