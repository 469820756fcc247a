"""The demo over several seeds: what a user should expect from `make demo`, as a mean and a spread.

    python -m bench.demo_seeds --seeds 0 1 2 3 4          # configs/demo/, one run per seed: output/demo_seed_<S>/

Each seed is one `main.py` run of the configuration in its own process and run folder (tag `<tag_prefix>_<seed>`);
a finished run is not trained again (main.py resumes it and only re-evaluates), so the command can be repeated or
extended with more seeds. At the end it prints one Markdown table: every metric of the protocol as the mean and the
sample standard deviation over the seeds, the lowest and highest value, and the centre prior on the same test split.

A run's numbers depend on the seed and on the CPU's kernels (torch picks other instruction sets, e.g. AVX2 or
AVX-512, on other machines, so the same seed does not give the same numbers everywhere); one machine and one seed
give bitwise equal runs (tests/test_objective_determinism.py). Arguments after `--` go to main.py unchanged
(e.g. `-- --epochs 2` for a quick look).
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METRICS = ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang", "heatmap_ap")


def run_seed(seed: int, args, extra: list[str]) -> dict:
    """Train and evaluate one seed (or only re-evaluate a finished run); its metrics.json."""
    tag = f"{args.tag_prefix}_{seed}"
    command = [sys.executable, str(ROOT / "main.py"), "--yaml_diffusion", str(args.yaml_diffusion),
               "--yaml_gaze", str(args.yaml_gaze), "--seed", str(seed), "--tag", tag,
               "--output_dir", str(args.output_dir), *extra]
    started = time.perf_counter()
    print(f"seed {seed}: {' '.join(command)}", flush=True)
    result = subprocess.run(command, cwd=ROOT, capture_output=not args.verbose, text=True)
    if result.returncode != 0:
        output = "" if args.verbose else (result.stdout[-2000:] + result.stderr[-4000:])
        raise SystemExit(f"seed {seed}: main.py failed (exit {result.returncode})\n{output}")
    metrics = json.loads((Path(args.output_dir) / tag / "metrics.json").read_text())
    print(f"seed {seed}: done in {time.perf_counter() - started:.0f} s: "
          + "  ".join(f"{key} {metrics[key]:.4f}" for key in METRICS if metrics.get(key) is not None), flush=True)
    return metrics


def spread(values: list[float]) -> tuple[float, float]:
    """(mean, sample standard deviation; 0 for one value)."""
    mean = sum(values) / len(values)
    if len(values) < 2:
        return mean, 0.0
    return mean, math.sqrt(sum((value - mean) ** 2 for value in values) / (len(values) - 1))


def markdown_table(runs: dict[int, dict]) -> str:
    """Mean +- standard deviation, min .. max over the seeds, and the centre prior, one row per metric."""
    seeds = sorted(runs)
    lines = [f"{len(seeds)} seeds ({', '.join(map(str, seeds))}); mean +- sample standard deviation over the seeds",
             "", "| metric | model: mean +- std | model: min .. max | centre prior |", "|---|---|---|---|"]
    for key in METRICS:
        values = [runs[seed][key] for seed in seeds if runs[seed].get(key) is not None]
        if not values:
            continue
        mean, std = spread(values)
        priors = {round(runs[seed]["baseline_centre_prior"][key], 6) for seed in seeds}
        prior = " / ".join(f"{value:.3f}" for value in sorted(priors))  # one value: the same test split every time
        digits = 1 if key.endswith("_ang") else 3
        name = f"{key} (deg)" if key.endswith("_ang") else key
        lines.append(f"| {name} | {mean:.{digits}f} +- {std:.{digits}f} | {min(values):.{digits}f} .. "
                     f"{max(values):.{digits}f} | {prior} |")
    first = runs[seeds[0]]
    lines += ["", f"({first['n_samples']} test samples, {first['sampler']} with {first['sample_steps']} steps, "
                  f"K = {first.get('sample_k', 1)}, protocol {first['protocol']})"]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> str:
    argv = sys.argv[1:] if argv is None else argv
    extra = argv[argv.index("--") + 1:] if "--" in argv else []
    own = argv[:argv.index("--")] if "--" in argv else argv
    parser = argparse.ArgumentParser(prog="python -m bench.demo_seeds", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--yaml_diffusion", default=ROOT / "configs" / "demo" / "diffusion.yaml")
    parser.add_argument("--yaml_gaze", default=ROOT / "configs" / "demo" / "gaze.yaml")
    parser.add_argument("--tag_prefix", default="demo_seed")
    parser.add_argument("--output_dir", default=ROOT / "output")
    parser.add_argument("--verbose", action="store_true", help="show each run's own output")
    args = parser.parse_args(own)
    if len(set(args.seeds)) != len(args.seeds):
        parser.error(f"--seeds: each seed once, found {args.seeds}")
    runs = {seed: run_seed(seed, args, extra) for seed in args.seeds}
    table = markdown_table(runs)
    print(table)
    return table


if __name__ == "__main__":
    main()
