"""The GPU figures of this project in one command (about 5-8 minutes on one GPU), written as a Markdown report.

    python -m bench.gpu_report [--out gpu_report.md]          # on a CUDA machine, from the project root
    python -m bench.gpu_report --quick --device cpu           # a tiny configuration on the CPU (seconds; tested)

Measured, each with the paper configuration (configs/diffusion.yaml + configs/gaze.yaml; `--quick`: a tiny one):
- training images/s of the real step (`engine.train.training_step`) at batch 16 and 32 in fp32, bf16,
  bf16 + channels_last and bf16 + channels_last + torch.compile, with peak memory and the host synchronisations
  CUDA reports per step (torch.cuda.set_sync_debug_mode: 0 expected, as tests/test_training_step.py proves on a
  stub device);
- evaluation images/s (`eval.evaluate.predict_heatmaps`, DDIM) at 50, 10 and 1 steps with K = 1 and 4, and the
  sampling loop with the UNet compiled in "reduce-overhead" mode (CUDA graphs);
- the training loader's images/s with 4, 8 and 16 workers on the synthetic dataset at the paper's input size,
  against the GPU's step rate (a loader slower than the step starves the GPU);
- a single-GPU `torchrun` (DDP) run of the step against the plain step.
Random inputs stand in for images in the model figures (the speed of a step does not depend on pixel values).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

from datasets import build_dataset
from datasets.synthetic import generate_gazefollow
from datasets.transforms import ColourJitter, colour_coefficients
from engine import distributed
from engine.build import build_formulation
from engine.config import load_config
from engine.data import EpochShuffleSampler, make_loader
from engine.train import RunningLosses, TrainingLoss, autocast_for, compile_model, training_step
from eval.evaluate import predict_heatmaps
from models.build import get_model
from optim import build_lr_scheduler, build_optimizer

PAPER = ["configs/diffusion.yaml", "configs/gaze.yaml"]
QUICK = dict(input_size=32, output_size=16, train_time_steps=50, list_resnet_scene_layers=[1, 1, 1, 1, 1],
             list_resnet_face_layers=[1, 1, 1, 1, 1], resnet_scene_inplanes=8, resnet_face_inplanes=8,
             unet_context_vector=128, unet_inplanes=8, list_unet_inplanes_multipliers=[1, 2],
             list_unet_attention_levels=[2], unet_spatial_tf_heads=2)
TRAIN_VARIANTS = {"fp32": dict(amp="off"), "bf16": dict(amp="bf16"),
                  "bf16 + channels_last": dict(amp="bf16", channels_last=True)}
COMPILED = dict(amp="bf16", channels_last=True, torch_compile=True)  # measured last: compiling takes minutes


class Report:
    def __init__(self, args):
        self.args, self.device = args, torch.device(args.device)
        self.cuda = self.device.type == "cuda"
        self.started = time.perf_counter()
        self.overrides = {"device": args.device, "no_wandb": True, **(QUICK if args.quick else {})}
        self.batches = (2,) if args.quick else (16, 32)
        self.steps, self.warmup = (1, 1) if args.quick else (20, 3)
        self.eval_steps, self.eval_ks = ((2, 1), (1, 2)) if args.quick else ((50, 10, 1), (1, 4))
        self.lines: list[str] = []

    def config(self, **changes):
        return load_config(PAPER, {**self.overrides, **changes})

    def over_budget(self) -> bool:
        return time.perf_counter() - self.started > self.args.budget_s

    def synchronize(self):
        if self.cuda:
            torch.cuda.synchronize(self.device)

    def batch(self, config, size: int) -> dict:
        side, out = config.input_size, config.output_size
        generator = torch.Generator().manual_seed(0)
        inout = (torch.arange(size) % 8 != 0).float()  # one out-of-frame person in eight
        # As the loaders deliver batches: uint8 pixels and masks, each sample's colour jitter (normalised on the GPU).
        pixels = {key: torch.randint(0, 256, (size, 3, side, side), generator=generator, dtype=torch.uint8)
                  for key in ("image", "face")}
        colour = torch.stack([colour_coefficients(ColourJitter(1.1, 0.9, 1.2, 0.02) if i % 2 else None)
                              for i in range(size)])
        batch = {**pixels, "colour": colour,
                 "head_mask": (torch.rand(size, 1, side, side, generator=generator) > 0.9).to(torch.uint8),
                 "heatmap": torch.rand(size, out, out, generator=generator) * inout[:, None, None], "inout": inout,
                 "index": torch.arange(size), "gaze_points": torch.rand(size, 20, 2, generator=generator)}
        return {k: v.pin_memory() for k, v in batch.items()} if self.cuda else batch

    # --- training ---------------------------------------------------------------------------------------------

    def train_rate(self, config, size: int, context=distributed.Distributed()) -> dict:
        torch.manual_seed(0)
        memory_format = torch.channels_last if config.channels_last else torch.contiguous_format
        model = get_model(config).to(self.device, memory_format=memory_format)
        if config.torch_compile:
            compile_model(model, **({"backend": "eager"} if not self.cuda else {}))  # CPU: no C++ toolchain needed
        optimizer = build_optimizer(*model.parameter_groups(), config)
        scheduler = build_lr_scheduler(optimizer, config, 10**6)
        scaler = torch.amp.GradScaler(self.device.type, enabled=False)
        formulation = build_formulation(config)
        autocast = autocast_for(config, self.device)
        loss_fn = TrainingLoss(model, formulation=formulation, config=config, device=self.device, autocast=autocast,
                               memory_format=memory_format, context=context)
        if context.enabled:
            loss_fn = torch.nn.parallel.DistributedDataParallel(
                loss_fn, device_ids=[self.device.index] if self.cuda else None, find_unused_parameters=True)
        batch, running = self.batch(config, size), RunningLosses()

        def step(number: int):
            losses = training_step(model, formulation, batch, config, self.device, optimizer,
                                   scheduler, scaler, autocast, memory_format, number, loss_fn=loss_fn, context=context)
            running.add(losses, number)

        for number in range(self.warmup):  # warm-up: allocator, cuDNN autotuning, compilation
            step(number)
        running.means(context)
        self.synchronize()
        if self.cuda:
            torch.cuda.reset_peak_memory_stats(self.device)
        started = time.perf_counter()
        for number in range(self.warmup, self.warmup + self.steps):
            step(number)
        self.synchronize()
        seconds = time.perf_counter() - started
        syncs = None
        if self.cuda:  # one more step, untimed, with CUDA reporting every call that makes the host wait
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                torch.cuda.set_sync_debug_mode("warn")
                try:
                    step(self.warmup + self.steps)
                finally:
                    torch.cuda.set_sync_debug_mode(0)
            syncs = sum("synchroniz" in str(w.message) for w in caught)
        running.means(context)
        peak = torch.cuda.max_memory_allocated(self.device) / 2**30 if self.cuda else None
        return {"images_per_s": size * self.steps / seconds * context.world_size, "peak_gib": peak,
                "syncs_per_step": syncs}

    def training(self) -> dict:
        self.lines += ["## Training step (paper configuration, `engine.train.training_step`)", "",
                       "| variant | batch | images/s | peak memory (GiB) | host syncs per step |", "|---|---|---|---|---|"]
        results = {}
        for name, changes in TRAIN_VARIANTS.items():
            for size in self.batches:
                if self.over_budget():
                    self.lines.append(f"| {name} | {size} | skipped: over the time budget | | |")
                    continue
                result = self.train_rate(self.config(**changes), size)
                results[(name, size)] = result
                self.lines.append(f"| {name} | {size} | {result['images_per_s']:.1f} | {_fmt(result['peak_gib'])} | "
                                  f"{'' if result['syncs_per_step'] is None else result['syncs_per_step']} |")
                print(self.lines[-1], flush=True)
        self.lines.append("")
        return results

    # --- evaluation -------------------------------------------------------------------------------------------

    def evaluation(self) -> None:
        size = self.batches[0] if self.args.quick else 2 * self.batches[0]
        self.lines += ["## Evaluation (`eval.evaluate.predict_heatmaps`, DDIM, bf16, batch "
                       f"{size}: the backbone once per batch, the UNet once per step for all K samples)", "",
                       "| steps | K | images/s |", "|---|---|---|"]
        base = self.config(amp="bf16")
        torch.manual_seed(0)
        model = get_model(base).to(self.device).eval()
        batch = self.batch(base, size)
        autocast = autocast_for(base, self.device)
        for steps in self.eval_steps:
            for k in self.eval_ks:
                if self.over_budget():
                    self.lines.append(f"| {steps} | {k} | skipped: over the time budget |")
                    continue
                rate = self.eval_rate(model, base.replace(sample_time_steps=steps, sample_k=k), batch, autocast)
                self.lines.append(f"| {steps} | {k} | {rate:.1f} |")
                print(self.lines[-1], flush=True)
        self.lines.append("")

    # --- compiled -------------------------------------------------------------------------------------------

    def compiled(self) -> None:
        """torch.compile of the training step (inductor) and of the sampling UNet in "reduce-overhead" mode (CUDA
        graphs), last because compiling takes minutes; a failure is reported in the table, not raised."""
        self.lines += ["## torch.compile (`--torch_compile`: the UNet and the gaze backbone; sampling: the UNet in "
                       "reduce-overhead mode, CUDA graphs)", "", "| what | batch | images/s | peak memory (GiB) |",
                       "|---|---|---|---|"]
        if self.args.quick:  # tracing alone takes a minute of CPU; tests/test_training_options.py covers the wiring
            self.lines += ["| not run with --quick | | | |", ""]
            return
        for size in self.batches:
            def train(size=size) -> str:
                result = self.train_rate(self.config(**COMPILED), size)
                return f"{result['images_per_s']:.1f} | {_fmt(result['peak_gib'])}"
            self.lines.append(self.guarded(f"training, bf16 + channels_last + compile | {size}", train))
        if self.cuda:
            base = self.config(amp="bf16")
            torch.manual_seed(0)
            model = get_model(base).to(self.device).eval()
            model.unet.compile(mode="reduce-overhead")
            size, steps = 2 * self.batches[0], self.eval_steps[1]
            batch, autocast = self.batch(base, size), autocast_for(base, self.device)
            for k in self.eval_ks:
                def sample(k=k) -> str:
                    config = base.replace(sample_time_steps=steps, sample_k=k)
                    return f"{self.eval_rate(model, config, batch, autocast):.1f} |"
                self.lines.append(self.guarded(f"evaluation, {steps} steps, K = {k}, UNet in CUDA graphs | {size}",
                                               sample))
        self.lines.append("")

    def guarded(self, what: str, measure) -> str:
        if self.over_budget():
            return f"| {what} | skipped: over the time budget | |"
        try:
            line = f"| {what} | {measure()} |"
        except Exception as error:  # a compiler failure is a finding of the report, not a reason to lose the rest
            line = f"| {what} | failed: {type(error).__name__}: {str(error).splitlines()[0][:120]} | |"
        print(line, flush=True)
        return line

    def eval_rate(self, model, config, batch, autocast) -> float:
        formulation = build_formulation(config)
        repeats = 1 if self.args.quick else 3
        predict_heatmaps(model, formulation, config, batch, self.device, autocast)  # warm-up (and compilation)
        self.synchronize()
        started = time.perf_counter()
        for _ in range(repeats):
            predict_heatmaps(model, formulation, config, batch, self.device, autocast)  # ends reading to the host
        return batch["image"].shape[0] * repeats / (time.perf_counter() - started)

    # --- loader -----------------------------------------------------------------------------------------------

    def loader(self, step_rate: float | None) -> None:
        workers = (0, 1) if self.args.quick else (4, 8, 16)
        self.lines += [f"## Training loader (synthetic GazeFollow, augmentation on, {self.config().input_size} px; "
                       f"{os.cpu_count()} CPU cores) against the GPU step", "",
                       f"| workers | images/s | / step rate (bf16 + channels_last, batch {self.batches[-1]}) |",
                       "|---|---|---|"]
        with tempfile.TemporaryDirectory() as root:
            generate_gazefollow(root, n_train_images=6 if self.args.quick else 300, n_test_images=1, seed=0)
            for count in workers:
                if self.over_budget():
                    self.lines.append(f"| {count} | skipped: over the time budget | |")
                    continue
                config = self.config(source_dataset_dir=root, num_workers=count, batch_size=self.batches[-1])
                train_set = build_dataset(config, "train")
                sampler = EpochShuffleSampler(len(train_set), seed=0)
                loader = make_loader(train_set, config, train=True, sampler=sampler)
                images, started = 0, None
                for epoch in range(1 if self.args.quick else 3):
                    sampler.set_epoch(epoch)
                    for batch in loader:
                        if started is None:  # worker start-up excluded
                            started = time.perf_counter()
                            continue
                        images += batch["image"].shape[0]
                rate = images / (time.perf_counter() - started)
                ratio = f"{rate / step_rate:.2f}" if step_rate else ""
                self.lines.append(f"| {count} | {rate:.0f} | {ratio} |")
                print(self.lines[-1], flush=True)
                del loader
        self.lines.append("")

    # --- DDP --------------------------------------------------------------------------------------------------

    def ddp(self, plain: dict | None) -> None:
        self.lines += ["## One-GPU torchrun (DDP) step against the plain step (bf16 + channels_last, batch "
                       f"{self.batches[0]})", "", "| run | images/s |", "|---|---|"]
        if self.over_budget() or plain is None:
            self.lines += ["| skipped: over the time budget | |", ""]
            return
        with tempfile.TemporaryDirectory() as folder:
            result = Path(folder) / "ddp.json"
            command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=1", "-m",
                       "bench.gpu_report", "--ddp_child", str(result), "--device", self.args.device]
            subprocess.run(command + (["--quick"] if self.args.quick else []), check=True,
                           env={**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")})
            ddp = json.loads(result.read_text())
        self.lines += [f"| plain | {plain['images_per_s']:.1f} |",
                       f"| torchrun, 1 process (DDP) | {ddp['images_per_s']:.1f} "
                       f"({ddp['images_per_s'] / plain['images_per_s']:.2f}x) |", ""]

    def ddp_child(self, result: Path) -> None:
        context = distributed.setup(self.args.device)
        if self.cuda:
            self.device = torch.device("cuda", context.local_rank)
        rate = self.train_rate(self.config(amp="bf16", channels_last=True), self.batches[0], context)
        if context.is_main:
            result.write_text(json.dumps(rate))
        distributed.cleanup(context)

    # --- all --------------------------------------------------------------------------------------------------

    def run(self) -> str:
        name = torch.cuda.get_device_name(self.device) if self.cuda else platform.processor() or "CPU"
        self.lines += ["# GPU report" + (" (--quick: tiny configuration, not a result)" if self.args.quick else ""),
                       "", f"`python -m bench.gpu_report{' --quick' if self.args.quick else ''}` on {name}, torch "
                       f"{torch.__version__}, {time.strftime('%Y-%m-%d')}.", ""]
        trained = self.training()
        self.evaluation()
        best = trained.get(("bf16 + channels_last", self.batches[-1]))
        self.loader(best["images_per_s"] if best else None)
        self.ddp(trained.get(("bf16 + channels_last", self.batches[0])))
        self.compiled()
        self.lines.append(f"Total time: {time.perf_counter() - self.started:.0f} s.")
        return "\n".join(self.lines) + "\n"


def _fmt(value) -> str:
    return "" if value is None else f"{value:.2f}"


def main(argv=None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--quick", action="store_true", help="a tiny configuration that runs in seconds (CPU test)")
    parser.add_argument("--out", type=Path, default=Path("gpu_report.md"))
    parser.add_argument("--budget_s", type=float, default=420.0,
                        help="later measurements are skipped (and say so) once this many seconds have passed")
    parser.add_argument("--ddp_child", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("CUDA is not available here: pass --device cpu (with --quick for the tiny configuration)")
    report = Report(args)
    if args.ddp_child:
        report.ddp_child(args.ddp_child)
        return ""
    if report.cuda:
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    text = report.run()
    args.out.write_text(text)
    print(f"\n{text}\nwritten to {args.out}")
    return text


if __name__ == "__main__":
    with nullcontext():
        main()
