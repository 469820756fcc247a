"""The Gaze360 CPU demo: `python -m gaze360.demo` (or `make gaze360-demo`).

Trains the multi-crop sin-cos LSTM of configs/gaze360/demo.yaml and the static model (the same options with one
crop and no LSTM: StaticSC at the demo size) on the synthetic Gaze360 data, then prints their test angular errors
beside the mean-direction baseline. Runs resume: a second call only re-evaluates.
"""
from __future__ import annotations

import sys
import time

from engine.config import load_config
from gaze360.data import SUBSETS
from gaze360.options import GAZE360
from gaze360.train import run

DEMO_YAML = "configs/gaze360/demo.yaml"


def main(argv: list[str] | None = None) -> int:
    multi_crop = load_config([DEMO_YAML], {}, GAZE360)
    static = multi_crop.replace(tag=multi_crop.tag + "_static", crop_sizes=[multi_crop.input_size],
                                temporal="none", target_index="middle")
    results = {}
    for name, config in (("multi-crop LSTM", multi_crop), ("static", static)):
        started = time.perf_counter()
        print(f"=== {name}: crops {config.crop_sizes}, temporal {config.temporal} -> {config.output_dir}/{config.tag}")
        results[name] = run(config)["test"]
        print(f"=== {name}: {time.perf_counter() - started:.0f} s")
    baseline = results["static"]["mean_direction_baseline"]
    print("\nGaze360 demo, synthetic test split: mean angular error (deg)")
    print("subset | multi-crop LSTM | static | mean direction | samples")
    print("---|---|---|---|---")
    for subset in SUBSETS:
        print(f"{subset} | {results['multi-crop LSTM']['model'][f'{subset}_deg']:.2f} | "
              f"{results['static']['model'][f'{subset}_deg']:.2f} | {baseline[f'{subset}_deg']:.2f} | "
              f"{baseline[f'{subset}_count']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
