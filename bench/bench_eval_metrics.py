"""Per-sample metric cost of each evaluation protocol, and metric computation in worker processes against the main
process, side by side on the same random heatmaps (ratios only; run `python -m bench.bench_eval_metrics` from the
project root). This is the work `--eval_metric_workers` moves off the process that runs the model."""
from __future__ import annotations

import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from eval.baselines import centre_prior_heatmap
from eval.evaluate import batch_metrics

# (protocol, image size of a typical test image, annotators per sample)
CASES = (("gazefollow", (640, 480), 10), ("vat", (1280, 720), 1), ("goo", (1920, 1080), 1))


def make_batches(protocol: str, image_size, annotators: int, n_batches: int, batch_size: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(n_batches):
        heatmaps = rng.random((batch_size, 64, 64)).astype(np.float32)
        targets = []
        for _ in range(batch_size):
            points = np.full((20, 2), -1.0)
            points[:annotators] = rng.random((annotators, 2))
            targets.append((points, rng.random(2), image_size, 1.0))
        batches.append((protocol, heatmaps, centre_prior_heatmap(64), targets))
    return batches


def main(n_batches: int = 8, batch_size: int = 16, workers: int = 2) -> None:
    per_sample = {}
    for protocol, size, annotators in CASES:
        batches = make_batches(protocol, size, annotators, 2, batch_size)
        started = time.perf_counter()
        for batch in batches:
            batch_metrics(*batch)
        per_sample[protocol] = (time.perf_counter() - started) / (2 * batch_size)
    for protocol, seconds in per_sample.items():
        print(f"{protocol:<11} {seconds * 1e3:8.2f} ms per sample (model + centre prior), "
              f"{seconds / per_sample['vat']:6.1f}x the VAT protocol")

    batches = make_batches("gazefollow", (640, 480), 10, n_batches, batch_size)
    started = time.perf_counter()
    serial = [batch_metrics(*batch) for batch in batches]
    serial_s = time.perf_counter() - started
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        # Start-up (process spawn, imports) excluded: an evaluation pays it once per run.
        warm_up = make_batches("gazefollow", (64, 48), 1, workers, 1)
        [future.result() for future in [pool.submit(batch_metrics, *batch) for batch in warm_up]]
        started = time.perf_counter()
        parallel = [future.result() for future in [pool.submit(batch_metrics, *batch) for batch in batches]]
        parallel_s = time.perf_counter() - started
    assert parallel == serial
    print(f"gazefollow, {n_batches * batch_size} samples: main process {serial_s:.2f} s, {workers} worker processes "
          f"{parallel_s:.2f} s ({serial_s / parallel_s:.2f}x, same values)")


if __name__ == "__main__":
    main()
