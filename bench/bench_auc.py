"""GazeFollow AUC at full image resolution: the project's rank-based `binary_auc` against sklearn's `roc_auc_score`,
side by side on the same maps (ratio only; run `python -m bench.bench_auc` from the project root)."""
from __future__ import annotations

import time

import numpy as np
from sklearn.metrics import roc_auc_score

from eval.metrics import binary_auc


def main(repeats: int = 20, height: int = 480, width: int = 640, annotators: int = 10) -> None:
    rng = np.random.default_rng(0)
    maps = [rng.random((height, width)) for _ in range(repeats)]
    targets = []
    for _ in range(repeats):
        target = np.zeros((height, width), dtype=bool)
        target.flat[rng.choice(target.size, size=annotators, replace=False)] = True
        targets.append(target)
    timings = {}
    for name, auc in (("sklearn roc_auc_score", lambda t, p: roc_auc_score(t.ravel(), p.ravel())),
                      ("eval.metrics.binary_auc", binary_auc)):
        started = time.perf_counter()
        values = [auc(t, p) for t, p in zip(targets, maps)]
        timings[name] = (time.perf_counter() - started) / repeats
        timings[name + " values"] = values
    assert np.allclose(timings["sklearn roc_auc_score values"], timings["eval.metrics.binary_auc values"], atol=1e-12)
    sklearn_s, ours_s = timings["sklearn roc_auc_score"], timings["eval.metrics.binary_auc"]
    print(f"{width}x{height} map, {annotators} positives, {repeats} maps")
    print(f"sklearn roc_auc_score   {sklearn_s * 1e3:8.2f} ms per person")
    print(f"eval.metrics.binary_auc {ours_s * 1e3:8.2f} ms per person   ({sklearn_s / ours_s:.1f}x faster, same values)")


if __name__ == "__main__":
    main()
