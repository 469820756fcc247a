"""The optimizer step on the CPU: PyTorch's default per-tensor AdamW loop against its multi-tensor (foreach) and fused
kernels, on the parameters of the demo model and of the paper model, side by side in one process (one thread,
interleaved rounds, medians of the thread's CPU time). optim.build_optimizer picks the fused kernel on the CPU and on
a GPU. Run from the project root:

    python -m bench.bench_optimizer_step [--rounds 7]
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from engine.config import parse_command_line
from models.build import get_model

MODELS = {
    "demo": ["--yaml_diffusion", "configs/demo/diffusion.yaml", "--yaml_gaze", "configs/demo/gaze.yaml"],
    "paper": ["--yaml_diffusion", "configs/diffusion.yaml", "--yaml_gaze", "configs/gaze.yaml"],
}
VARIANTS = {"default loop": {"foreach": False}, "foreach": {"foreach": True}, "fused": {"fused": True}}


def main(rounds: int, steps: int) -> dict:
    torch.set_num_threads(1)
    results = {}
    for name, argv in MODELS.items():
        config, _ = parse_command_line([*argv, "--tag", "bench"])
        params = list(get_model(config, init_backbone_weights=False).parameters())
        for param in params:
            param.grad = torch.randn_like(param)
        optimizers = {variant: torch.optim.AdamW(params, lr=1e-6, **options) for variant, options in VARIANTS.items()}
        for optimizer in optimizers.values():
            optimizer.step()  # allocate the moments
        times = {variant: [] for variant in optimizers}
        for _ in range(rounds):
            for variant, optimizer in optimizers.items():
                started = time.thread_time()
                for _ in range(steps):
                    optimizer.step()
                times[variant].append((time.thread_time() - started) / steps)
        medians = {variant: statistics.median(values) for variant, values in times.items()}
        count = sum(p.numel() for p in params)
        print(f"\n{name} model: {len(params)} tensors, {count:,} parameters, 1 thread, "
              f"{rounds} rounds of {steps} steps")
        print("| AdamW | ms per step (CPU) | relative to the default loop |\n|---|---|---|")
        for variant, value in medians.items():
            print(f"| {variant} | {value * 1e3:.1f} | {value / medians['default loop']:.2f} |")
        results[name] = medians
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--steps", type=int, default=5)
    args = parser.parse_args()
    main(args.rounds, args.steps)
