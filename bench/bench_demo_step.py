"""The demo's training step on the CPU (what `make demo` spends its time on), side by side in one process: the demo
configuration as shipped, with attention also at the 16 x 16 level (the configuration before), and with the default
per-tensor AdamW loop instead of the fused kernel. One batch of the synthetic training set (built once, so the loader
is not timed), interleaved rounds, medians of wall time with the demo's threads. Run from the project root after
`make data`:

    python -m bench.bench_demo_step [--threads 2] [--rounds 5] [--steps 4]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.utils.data import default_collate

import engine.train as train
from datasets import build_dataset
from engine.build import build_formulation
from engine.config import parse_command_line
from models.build import get_model
from optim import build_lr_scheduler, build_optimizer

DEMO = ["--yaml_diffusion", "configs/demo/diffusion.yaml", "--yaml_gaze", "configs/demo/gaze.yaml", "--tag", "bench"]
VARIANTS = {
    "demo as shipped (attention at 8x8, fused AdamW)": ([], None),
    "attention at 16x16 and 8x8 (the demo before)": (["--list_unet_attention_levels", "2", "4"], None),
    "default AdamW loop instead of fused": ([], {"foreach": False}),
}


def stepper(extra: list[str], optimizer_options: dict | None, batch: dict):
    config, _ = parse_command_line([*DEMO, *extra])
    torch.manual_seed(0)
    model = get_model(config, init_backbone_weights=False)
    optimizer = build_optimizer(*model.parameter_groups(), config)
    if optimizer_options is not None:  # the same groups and rates, another kernel
        optimizer = type(optimizer)(optimizer.param_groups, **optimizer_options)
    scheduler = build_lr_scheduler(optimizer, config, 1000)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    formulation = build_formulation(config)
    device = torch.device("cpu")
    autocast = train.autocast_for(config, device)
    state = {"step": 0}

    def step():
        train.training_step(model, formulation, batch, config, device, optimizer, scheduler, scaler, autocast,
                            torch.contiguous_format, state["step"])
        state["step"] += 1
    return step


def main(threads: int, rounds: int, steps: int) -> dict:
    torch.set_num_threads(threads)
    config, _ = parse_command_line(DEMO)
    dataset = build_dataset(config, "train")
    batch = default_collate([dataset[(0, index)] for index in range(config.batch_size)])
    steppers = {name: stepper(extra, options, batch) for name, (extra, options) in VARIANTS.items()}
    for step in steppers.values():
        step()  # warm-up
    times = {name: [] for name in steppers}
    for _ in range(rounds):
        for name, step in steppers.items():
            started = time.perf_counter()
            for _ in range(steps):
                step()
            times[name].append((time.perf_counter() - started) / steps)
    medians = {name: statistics.median(values) for name, values in times.items()}
    shipped = next(iter(medians.values()))
    print(f"demo training step, batch {config.batch_size}, {threads} threads, {rounds} rounds of {steps} steps")
    print("| variant | relative step time (demo as shipped = 1) |\n|---|---|")
    for name, value in medians.items():
        print(f"| {name} | {value / shipped:.2f} |")
    return medians


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=4)
    args = parser.parse_args()
    main(args.threads, args.rounds, args.steps)
