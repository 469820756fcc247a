"""AUC / min L2 / avg L2 of one trained checkpoint against sampling steps, sampler (DDIM, DPM-Solver++(2M)) and K samples
per input, with the same seed and test samples for every cell (the GazeFollow protocol of eval/evaluate.py).

Run `python -m bench.bench_sampler_table --run_dir output/RUN/TAG [--fraction 0.25]` from the project root: it reads
the run's config.yaml and last.pt, prints a Markdown table and writes sampler_table.json (--out) into the run folder.
Samplers can run as separate processes (--samplers ddim / --samplers dpm++2m with different --out).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from datasets import build_dataset
from engine.checkpoint import load_checkpoint
from engine.config import load_config
from engine.data import make_loader
from eval.evaluate import evaluate
from models.build import get_model


def main(run_dir: Path, fraction: float, steps_list, samplers, ks, checkpoint: str = "last.pt",
         threads: int = 1, out: str = "sampler_table.json") -> list[dict]:
    torch.set_num_threads(threads)  # see bench_unet: extra threads on a busy machine only wait
    common = {"device": "cpu", "num_workers": 0, "test_subsample_fraction": fraction, "no_wandb": True}
    base = load_config([run_dir / "config.yaml"], common)
    state = load_checkpoint(run_dir / checkpoint)
    model = get_model(base)
    model.load_state_dict(state["model"])
    batches = list(make_loader(build_dataset(base, "test"), base, train=False))  # the same samples for every cell
    rows = []
    for sampler in samplers:
        for k in ks:
            for steps in steps_list:
                config = load_config([run_dir / "config.yaml"],
                                     {**common, "sampler": sampler, "sample_k": k, "sample_time_steps": steps})
                started = time.perf_counter()
                summary = evaluate(model, config, batches, torch.device("cpu"), progress=False)
                rows.append({"sampler": sampler, "k": k, "steps": steps, "auc": summary["auc"],
                             "min_l2": summary["min_l2"], "avg_l2": summary["avg_l2"],
                             "n_samples": summary["n_samples"], "seconds": round(time.perf_counter() - started, 1),
                             "centre_prior": summary["baseline_centre_prior"]})
                print(f"{sampler:>8} K={k} steps={steps:>3}: auc {summary['auc']:.4f} min_l2 {summary['min_l2']:.4f} "
                      f"avg_l2 {summary['avg_l2']:.4f} ({rows[-1]['seconds']} s)", flush=True)
    prior = rows[0]["centre_prior"]
    print(f"\n{rows[0]['n_samples']} test samples, checkpoint {run_dir / checkpoint} (epoch {state['epoch']})\n")
    print("| sampler | K | steps | AUC | min L2 | avg L2 |\n|---|---|---|---|---|---|")
    for row in rows:
        print(f"| {row['sampler']} | {row['k']} | {row['steps']} | {row['auc']:.4f} | {row['min_l2']:.4f} | "
              f"{row['avg_l2']:.4f} |")
    print(f"| centre prior | - | - | {prior['auc']:.4f} | {prior['min_l2']:.4f} | {prior['avg_l2']:.4f} |")
    (run_dir / out).write_text(json.dumps(
        {"checkpoint": str(run_dir / checkpoint), "epoch": state["epoch"], "rows": rows}, indent=2) + "\n")
    return rows


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--run_dir", type=Path, required=True)
    parser.add_argument("--checkpoint", default="last.pt")
    parser.add_argument("--fraction", type=float, default=0.0, help="test_subsample_fraction (0 = the whole test set)")
    parser.add_argument("--steps", default="1,2,5,10,25,50")
    parser.add_argument("--samplers", default="ddim,dpm++2m")
    parser.add_argument("--k", default="1,4")
    parser.add_argument("--out", default="sampler_table.json", help="JSON file written into the run folder")
    args = parser.parse_args()
    main(args.run_dir, args.fraction, [int(s) for s in args.steps.split(",")], args.samplers.split(","),
         [int(k) for k in args.k.split(",")], args.checkpoint, out=args.out)
