"""The ONNX export on onnxruntime against PyTorch, on the CPU: the demo model (configs/demo, random weights) predicting
1 and 5 people of a frame with the configured sampler (encoder once, then every denoising step), and the largest
heatmap difference between the two. `python -m bench.bench_onnx [--repeats 5] [--threads 1]`.

Timings are interleaved (PyTorch, then onnxruntime, each round) and the medians compared.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.bench_predict_people import BOXES, demo_predictor, frame_image
from datasets.transforms import model_inputs
from eval.evaluate import predict_heatmaps
from inference.onnx_runner import OnnxPredictor, export_onnx


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1, help="torch and onnxruntime intra-op threads")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    image = frame_image()
    with tempfile.TemporaryDirectory() as directory:
        predictor = demo_predictor(Path(directory), "cpu")
        export_onnx(Path(directory) / "demo_random.pt", Path(directory) / "demo.onnx")
        runner = OnnxPredictor(Path(directory) / "demo.onnx", threads=args.threads)
    config = predictor.config
    batches = {}
    for people in (1, 5):
        inputs = [model_inputs(image, np.array(box, dtype=float), config.input_size) for box in BOXES[:people]]
        batches[people] = {key: torch.stack([p[key] for p in inputs]) for key in ("image", "head_mask", "face")}

    def torch_run(batch):
        torch.manual_seed(config.seed)
        return predict_heatmaps(predictor.model, predictor.formulation, config, batch, torch.device("cpu"))

    def onnx_run(batch):
        torch.manual_seed(config.seed)
        return runner.predict(batch)

    difference = max(float(np.abs(torch_run(b)[0] - onnx_run(b)[0]).max()) for b in batches.values())
    # One denoising step compared before the sampler's clipping (random weights saturate the clipped heatmaps).
    with torch.no_grad():
        features = predictor.model.encode(*(batches[5][key] for key in ("image", "head_mask", "face")))
        x_t, t = torch.randn(5, config.unet_inout_channels, config.output_size, config.output_size), torch.arange(5)
        step_torch = predictor.formulation.network(predictor.model)(x_t, t, **predictor.model.denoiser_kwargs(features))
        step_onnx = runner.denoise(x_t, t, **predictor.model.denoiser_kwargs(features))
    step_difference = float((step_torch - step_onnx).abs().max())
    times = {(engine, people): [] for engine in ("pytorch", "onnxruntime") for people in batches}
    for _ in range(args.repeats):
        for people, batch in batches.items():
            for engine, run in (("pytorch", torch_run), ("onnxruntime", onnx_run)):
                started = time.perf_counter()
                run(batch)
                times[engine, people].append(time.perf_counter() - started)
    print(f"demo model, {predictor.sampler} {config.sample_time_steps} steps, K = {config.sample_k}; CPU, "
          f"{args.threads} thread(s); median of {args.repeats} interleaved rounds; largest heatmap difference "
          f"onnxruntime - PyTorch: {difference:.2e}; largest network-output difference of one step: "
          f"{step_difference:.2e}")
    for people in batches:
        pytorch, onnx = (float(np.median(times[engine, people])) for engine in ("pytorch", "onnxruntime"))
        print(f"{people} {'person' if people == 1 else 'people'}: PyTorch {pytorch * 1e3:7.1f} ms  onnxruntime "
              f"{onnx * 1e3:7.1f} ms  ({pytorch / onnx:.2f}x)")


if __name__ == "__main__":
    main()
