"""Evaluation throughput (images per second) of `eval.evaluate.predict_heatmaps` for 1, 5, 10, 25, 50 sampling steps
and K = 1 and 4 samples per input: the gaze backbone runs once per image (counted), each step runs only the UNet, once
for all B x K samples. CPU time of the thread (a shared machine's waits are not counted). CPU figures are relative
(machine-bound); absolute GPU figures come from bench/gpu_report.py. Run
`python -m bench.bench_eval_throughput [--config demo|paper] [--k 1,4]` from the project root."""
from __future__ import annotations

import argparse
import time

import torch

from engine.build import build_formulation
from engine.config import load_config
from eval.evaluate import predict_heatmaps
from models.build import get_model

CONFIGS = {"demo": ["configs/demo/diffusion.yaml", "configs/demo/gaze.yaml"],
           "paper": ["configs/diffusion.yaml", "configs/gaze.yaml"]}


def main(config_name: str = "demo", batch: int = 16, steps_list=(1, 5, 10, 25, 50), repeats: int = 2,
         sampler: str = "ddim", threads: int = 1, ks=(1,)) -> list[tuple[int, int, float]]:
    # One thread by default: on a shared machine, intra-op threads that wait for busy cores distort the figures.
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    base = load_config(CONFIGS[config_name], {"device": "cpu", "sampler": sampler})
    model = get_model(base).eval()
    encodes = []
    model.gaze_backbone.register_forward_hook(lambda module, args, out: encodes.append(args[0].shape[0]))
    side = base.input_size
    data = {"image": torch.randn(batch, 3, side, side), "face": torch.randn(batch, 3, side, side),
            "head_mask": (torch.rand(batch, 1, side, side) > 0.8).float()}
    print(f"predict_heatmaps, {config_name} configuration ({base.input_size} px inputs, {base.output_size}^2 heatmaps), "
          f"{sampler}, batch {batch}, CPU {torch.get_num_threads()} threads, best of {repeats}")
    rows = []
    for k in ks:
        for steps in steps_list:
            config = load_config(CONFIGS[config_name], {"device": "cpu", "sampler": sampler, "sample_time_steps": steps,
                                                        "sample_k": k})
            formulation = build_formulation(config)
            best = float("inf")
            for _ in range(repeats):
                encodes.clear()
                started = time.thread_time()
                predict_heatmaps(model, formulation, config, data, torch.device("cpu"))
                best = min(best, time.thread_time() - started)
                assert encodes == [batch], f"the backbone ran {encodes} times, expected once for the batch"
            rows.append((k, steps, batch / best))
            print(f"  K={k} {steps:>3} steps  {rows[-1][2]:9.2f} images/s", flush=True)
    reference = next(rate for k, steps, rate in rows if (k, steps) == (1, max(steps_list)))
    print(f"\n| K | steps | images/s (CPU) | relative to K = 1 at {max(steps_list)} steps |\n|---|---|---|---|")
    for k, steps, rate in rows:
        print(f"| {k} | {steps} | {rate:.2f} | {rate / reference:.1f} |")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", choices=sorted(CONFIGS), default="demo")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--sampler", default="ddim")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--steps", default="1,5,10,25,50")
    parser.add_argument("--k", default="1", help="samples per input, comma-separated (e.g. 1,4)")
    args = parser.parse_args()
    main(args.config, args.batch, [int(s) for s in args.steps.split(",")], repeats=args.repeats, sampler=args.sampler,
         threads=args.threads, ks=[int(k) for k in args.k.split(",")])
