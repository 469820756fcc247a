"""Export the evaluation weights of a checkpoint to a .safetensors file (no pickle, loads anywhere), or the model to
ONNX (an encoder graph and a one-step denoising graph; one graph for a direct heatmap decoder; see
inference/onnx_runner.py):

    python -m pretrained.export output/run1/last.pt run1.safetensors [--weights auto|ema|model] [--scheme auto|...]
    python -m pretrained.export output/run1/last.pt run1.onnx [--config YAML ...]
    python -m pretrained.export output/run1/last.pt run1_hub --format hub [--weights ...] [--metrics metrics.json]

The checkpoint may be this project's or any supported naming scheme (keys are renamed to this project's names; keys
with no place here are reported and left out). `--weights auto` exports what the run evaluates: the EMA weights when
the checkpoint was trained with `ema_on`, else the model weights. The file's metadata names them
("evaluated_weights"), its source and scheme; `--eval_weights FILE.safetensors` evaluates it. `--format hub` writes
a Hub-style folder instead (weights, config.json, model card; pretrained/hub.py, docs/hub.md).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import torch

from pretrained.files import load_checkpoint
from pretrained.loading import EMA_CONTAINERS, detect_scheme, unwrap_state_dict
from pretrained.renaming import SCHEMES, rename_keys


def export_safetensors(checkpoint_path: str | Path, output_path: str | Path, weights: str = "auto",
                       scheme: str = "auto", trust_legacy: bool = False) -> dict[str, str]:
    """Write the chosen weights of `checkpoint_path` to `output_path` atomically; returns the metadata written."""
    from safetensors.torch import save_file

    checkpoint = load_checkpoint(checkpoint_path, trust_legacy=trust_legacy)
    if weights == "auto":
        trained_with_ema = isinstance(checkpoint.get("config"), dict) and checkpoint["config"].get("ema_on")
        weights = "ema" if trained_with_ema else "model"
    if weights not in ("ema", "model"):
        raise ValueError(f"weights must be auto, ema or model, found {weights!r}")
    state = unwrap_state_dict(checkpoint, source=str(checkpoint_path),
                              **({"containers": EMA_CONTAINERS} if weights == "ema" else {}))
    scheme = detect_scheme(state) if scheme == "auto" else scheme
    renamed, dropped, unmatched = rename_keys(state, SCHEMES[scheme])
    if dropped or unmatched:
        print(f"{checkpoint_path}: left out {len(dropped)} keys with no place in this project and {len(unmatched)} "
              f"keys no '{scheme}' rule matches: {(dropped + unmatched)[:8]}")
    # safetensors needs contiguous tensors that share no storage.
    tensors = {new: state[old].detach().contiguous().clone() for old, new in renamed.items()}
    metadata = {"format": "diffusion-gaze", "evaluated_weights": weights, "source": str(checkpoint_path),
                "scheme": scheme}
    output_path = Path(output_path)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(prefix=f".{output_path.name}.", suffix=".tmp", dir=output_path.parent)
    os.close(handle)
    try:
        save_file(tensors, temporary, metadata=metadata)
        os.replace(temporary, output_path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return metadata


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pretrained.export", description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", help="checkpoint file (.pt) of this project or a supported naming scheme")
    parser.add_argument("output", help="the .safetensors file to write, or OUT.onnx (writes OUT.encoder.onnx and "
                                       "OUT.denoise.onnx; OUT.onnx itself for a direct heatmap decoder), or with "
                                       "--format hub a folder")
    parser.add_argument("--format", choices=("auto", "safetensors", "onnx", "hub"), default="auto",
                        help="auto: from the output's suffix (.safetensors or .onnx); hub: a Hub-style folder "
                             "(model.safetensors, config.json, training.json, README.md model card) [default: auto]")
    parser.add_argument("--metrics", metavar="JSON",
                        help="hub only: the metrics.json the model card reports [default: the run folder's, when it "
                             "reports the checkpoint's step]")
    parser.add_argument("--config", nargs="+", default=(), metavar="YAML",
                        help="ONNX only: the YAML file(s) of a weight file that stores no configuration")
    parser.add_argument("--weights", choices=("auto", "ema", "model"), default="auto",
                        help="auto: the EMA if the run was trained with ema_on, else the model weights")
    parser.add_argument("--scheme", choices=("auto", *sorted(SCHEMES)), default="auto", help="key naming scheme")
    parser.add_argument("--trust_legacy_checkpoint", action="store_true",
                        help="allow a trusted file that needs unsafe unpickling (e.g. original DiffusionGaze)")
    args = parser.parse_args(argv)
    suffix = {"onnx": ".onnx", "safetensors": ".safetensors"}.get(args.format)
    if suffix and not args.output.endswith(suffix):
        parser.error(f"--format {args.format}: the output file must end in {suffix}, found {args.output}")
    if args.metrics and args.format != "hub":
        parser.error("--metrics goes with --format hub (the model card)")
    try:
        if args.format == "hub":
            from pretrained.hub import export_hub

            hub = export_hub(args.checkpoint, args.output, args.weights, args.scheme, args.trust_legacy_checkpoint,
                             args.metrics)
            print(f"wrote {args.output}/ (model.safetensors, config.json, training.json, README.md): "
                  f"{hub.evaluated_weights} weights of {args.checkpoint}"
                  + ("" if "metrics" in hub.training else "; no metrics of this step found (--metrics FILE)"))
            return 0
        if args.output.endswith(".onnx"):
            if args.scheme != "auto":
                parser.error("--scheme applies to .safetensors exports; an ONNX export builds the model as predict.py "
                             "does (the naming is detected)")
            # Imported here: building the model as predict.py does is the inference room's job (imports go one way).
            from inference.onnx_runner import export_onnx

            paths = export_onnx(args.checkpoint, args.output, args.config, use_weights=args.weights,
                                trust_legacy=args.trust_legacy_checkpoint)
            what = ("(image, head_mask, face -> heatmap, inout)" if len(paths) == 1 else
                    "(image, head_mask, face -> conditioning, inout; x_t, t, conditioning -> network output)")
            print(f"wrote {' and '.join(map(str, paths))} {what} of {args.checkpoint}; run them with "
                  "inference.onnx_runner.OnnxPredictor")
            return 0
        if not args.output.endswith(".safetensors"):
            parser.error(f"the output file must end in .safetensors or .onnx, found {args.output}")
        if args.config:
            parser.error("--config applies to ONNX exports (the .safetensors file holds the weights only)")
        metadata = export_safetensors(args.checkpoint, args.output, args.weights, args.scheme,
                                      args.trust_legacy_checkpoint)
    except (ValueError, FileNotFoundError, RuntimeError) as error:  # CheckpointError, ConfigError, missing weights
        print(f"{parser.prog}: error: {error}", file=sys.stderr)
        return 2
    print(f"wrote {args.output}: {metadata['evaluated_weights']} weights of {args.checkpoint} "
          f"(scheme {metadata['scheme']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
