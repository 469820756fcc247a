"""What checking a configuration costs when a run starts, side by side in one process: reading the YAML files and
applying every declared rule (engine.config.load_config), building the model on the meta device
(engine.config.check_buildable: the model's own checks, no memory), and building the real model on the CPU (what a
run does next anyway). Interleaved rounds, medians of wall time. Run from the project root:

    python -m bench.bench_config_check [--rounds 7] [--threads 2]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from engine.config import check_buildable, load_config
from models.build import get_model

CONFIGURATIONS = {
    "paper size (configs/diffusion.yaml + gaze.yaml)": ["configs/diffusion.yaml", "configs/gaze.yaml"],
    "demo (configs/demo/)": ["configs/demo/diffusion.yaml", "configs/demo/gaze.yaml"],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name, files in CONFIGURATIONS.items():
        config = load_config(files, {"device": "cpu"})
        check_buildable(config)  # warm-up: imports, first-call costs
        times = {"rules": [], "meta build": [], "real build": []}
        for _ in range(args.rounds):
            start = time.perf_counter()
            config = load_config(files, {"device": "cpu"})
            times["rules"].append(time.perf_counter() - start)
            start = time.perf_counter()
            check_buildable(config)
            times["meta build"].append(time.perf_counter() - start)
            start = time.perf_counter()
            get_model(config, init_backbone_weights=False)
            times["real build"].append(time.perf_counter() - start)
        median = {key: statistics.median(values) for key, values in times.items()}
        print(f"{name}: " + ", ".join(f"{key} {value * 1000:.0f} ms ({value / median['real build']:.2f}x the real "
                                      "build)" for key, value in median.items()))


if __name__ == "__main__":
    main()
