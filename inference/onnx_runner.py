"""ONNX export of a trained model and a reference runner on onnxruntime that runs the configured formulation.

`python -m pretrained.export CKPT OUT.onnx` writes, for a diffusion decoder, two graphs beside each other:
- `OUT.encoder.onnx`: (image [B,3,S,S], head_mask [B,1,S,S], face [B,3,S,S][, depth [B,3,S,S]]) ->
  (conditioning [B,N,D][, spatial [B,4,O,O] with concat_scene], inout [B] probability). Run once per image.
- `OUT.denoise.onnx`: one denoising step, (x_t [B,C,O,O], t [B] float32 timesteps of the training process,
  conditioning[, spatial]) -> the network output [B,C',O,O] (the UNet, with its input divided by its per-sample
  standard deviation first when norm_std_flag is on). Run once per sampling step.
and for a direct decoder (heatmap_decoder of kind "direct") one graph, `OUT.onnx` itself: encoder and decoder,
(image, head_mask, face) -> (heatmap [B,O,O], inout [B] probability), one call per batch of people.
Every graph stores the run's configuration as JSON in its metadata ("config"), so `OnnxPredictor(OUT.onnx)` needs
nothing else: for a diffusion decoder it encodes with the first graph and runs the configured formulation's sampler
(eval.evaluate.sample_conditioned: sampler, steps, ddim_eta, sample_k, clip_denoised, ...) calling the second graph
at every step. The diffusion arithmetic stays this project's (torch on the CPU); only the networks run in
onnxruntime.
"""
from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from engine.build import build_formulation
from engine.config import load_config
from eval.evaluate import sample_conditioned

OPSET = 17


def graph_paths(path: str | Path) -> tuple[Path, Path]:
    """(encoder, denoise) graph files of the export named `path` (OUT.onnx -> OUT.encoder.onnx, OUT.denoise.onnx)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix == ".onnx" else path
    return stem.with_name(stem.name + ".encoder.onnx"), stem.with_name(stem.name + ".denoise.onnx")


def direct_graph_path(path: str | Path) -> Path:
    """The one graph of a direct decoder's export named `path` (OUT.onnx itself)."""
    path = Path(path)
    return path if path.suffix == ".onnx" else path.with_name(path.name + ".onnx")


class EncoderGraph(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, image, head_mask, face, depth=None):
        features = self.model.encode(image, head_mask, face, depth)
        inout = torch.sigmoid(self.model.predict_inout_logit(features).float())
        spatial = (features["spatial"],) if "spatial" in features else ()
        return (features["conditioning"], *spatial, inout)


class DenoiseGraph(nn.Module):
    def __init__(self, model: nn.Module, formulation):
        super().__init__()
        self.network = formulation.network(model)

    def forward(self, x_t, t, conditioning, spatial=None):
        kwargs = {"context": conditioning} if spatial is None else {"context": conditioning, "spatial": spatial}
        return self.network(x_t, t, **kwargs)


class DirectGraph(nn.Module):
    """Encoder and direct decoder in one graph: the formulation's one-pass "sample" and the in/out probability."""

    def __init__(self, model: nn.Module, formulation):
        super().__init__()
        self.model, self.formulation = model, formulation

    def forward(self, image, head_mask, face):
        features = self.model.encode(image, head_mask, face)
        inout = torch.sigmoid(self.model.predict_inout_logit(features).float())
        out = self.formulation.sample(self.formulation.network(self.model),
                                      self.formulation.conditioning(self.model, features), image.shape[0],
                                      image.device)
        return out["heatmaps"], torch.sigmoid(out["inout_logit"]) if "inout_logit" in out else inout


def export_onnx(weights: str | Path, output: str | Path, config_paths=(), overrides=None, use_weights: str = "auto",
                trust_legacy: bool = False) -> tuple[Path, ...]:
    """Write the graphs of `weights` (built as predict.py builds it: the checkpoint's stored configuration;
    `use_weights` auto = its evaluated weights, or ema / model): the encoder and denoising-step graphs of a diffusion
    decoder, the one graph of a direct decoder; returns their paths."""
    import onnx

    from inference.predictor import Predictor

    predictor = Predictor(weights, config_paths, {"device": "cpu", **(overrides or {})}, use_weights=use_weights,
                          trust_legacy=trust_legacy)
    model, config = predictor.model.float().eval().requires_grad_(False), predictor.config
    if config.depth_flag:
        raise ValueError(f"{weights}: a depth_flag model needs depth maps, which predict.py and this export do not "
                         "compute; export a model without depth")
    size, out = config.input_size, config.output_size
    batch = 2
    image, face = torch.randn(batch, 3, size, size), torch.randn(batch, 3, size, size)
    head_mask = torch.zeros(batch, 1, size, size)
    head_mask[:, :, size // 4: size // 2, size // 4: size // 2] = 1
    formulation = predictor.formulation
    encoder_path, denoise_path = graph_paths(output)
    direct_path = direct_graph_path(output)
    encoder_path.parent.mkdir(parents=True, exist_ok=True)
    if not formulation.diffuses:  # a direct decoder: one graph, nothing to sample
        _export(DirectGraph(model, formulation), (image, head_mask, face), direct_path,
                ["image", "head_mask", "face"], ["heatmap", "inout"])
        paths, stale = (direct_path,), (encoder_path, denoise_path)
    else:
        with torch.no_grad():
            encoded = EncoderGraph(model)(image, head_mask, face)
        spatial = config.concat_scene
        encoder_outputs = ["conditioning", *(["spatial"] if spatial else []), "inout"]
        _export(EncoderGraph(model), (image, head_mask, face), encoder_path, ["image", "head_mask", "face"],
                encoder_outputs)
        x_t = torch.randn(batch, config.unet_inout_channels, out, out)
        t = torch.tensor([3.0, 7.0])
        step_inputs = (x_t, t, encoded[0], *((encoded[1],) if spatial else ()))
        _export(DenoiseGraph(model, formulation), step_inputs, denoise_path,
                ["x_t", "t", "conditioning", *(["spatial"] if spatial else [])], ["output"])
        paths, stale = (encoder_path, denoise_path), (direct_path,)
    for path in stale:  # an earlier export of the other kind under the same name would be read instead
        if path.is_file():
            path.unlink()
            print(f"removed {path}, an earlier export of another decoder kind under the same name")
    metadata = {"format": "diffusion-gaze-onnx", "config": json.dumps(config.to_dict()), "weights": str(weights),
                "evaluated_weights": predictor.evaluated_weights}
    for path in paths:
        graph = onnx.load(str(path))
        onnx.helper.set_model_props(graph, metadata)
        onnx.save(graph, str(path))
    return paths


def _export(module: nn.Module, inputs: tuple, path: Path, input_names: list[str], output_names: list[str]) -> None:
    """TorchScript-based export (the torch.export-based one needs onnxscript, not a dependency here). Its warnings
    are about shape checks traced as constants: the input size is fixed by the configuration anyway."""
    dynamic = {name: {0: "batch"} for name in input_names + output_names}
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", category=DeprecationWarning)
        warnings.simplefilter("ignore", category=torch.jit.TracerWarning)
        # scaled_dot_product_attention's dropout_p = 0 is exported as a Dropout of ratio 0 (an identity).
        warnings.filterwarnings("ignore", message=".*operator 'dropout' is set to train=True.*")
        torch.onnx.export(module, inputs, str(path), input_names=input_names, output_names=output_names,
                          dynamic_axes=dynamic, opset_version=OPSET, dynamo=False, external_data=False)


class OnnxPredictor:
    """Heatmaps and in/out probabilities from an export, with the configured formulation: `predict(batch)` takes the
    tensors predict.py builds (datasets.transforms.model_inputs stacked: image, head_mask, face)."""

    def __init__(self, path: str | Path, providers=("CPUExecutionProvider",), threads: int | None = None):
        import onnxruntime

        options = onnxruntime.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        encoder_path, denoise_path = graph_paths(path)
        direct_path = direct_graph_path(path)
        self.direct = direct_path.is_file()  # a direct decoder's export: one graph
        for graph in (direct_path,) if self.direct else (encoder_path, denoise_path):
            if not graph.is_file():
                raise FileNotFoundError(f"ONNX graph not found: {graph} (written by `python -m pretrained.export "
                                        f"CKPT {path}`)")
        first = direct_path if self.direct else encoder_path
        self.encoder = onnxruntime.InferenceSession(str(first), options, providers=list(providers))
        self.step = None if self.direct else \
            onnxruntime.InferenceSession(str(denoise_path), options, providers=list(providers))
        stored = self.encoder.get_modelmeta().custom_metadata_map.get("config")
        if stored is None:
            raise ValueError(f"{first}: no 'config' in its metadata; re-export it with python -m pretrained.export")
        self.config = load_config((), {**json.loads(stored), "device": "cpu"})

    def encode(self, batch: dict) -> dict[str, np.ndarray]:
        """The first graph's outputs (a direct decoder's: its heatmap and in/out probability)."""
        feeds = {name: _numpy(batch[name]) for name in ("image", "head_mask", "face")}
        names = [node.name for node in self.encoder.get_outputs()]
        return dict(zip(names, self.encoder.run(None, feeds)))

    def denoise(self, x_t: torch.Tensor, t: torch.Tensor, context: torch.Tensor,
                spatial: torch.Tensor | None = None) -> torch.Tensor:
        """What the sampler calls at every step, as it calls the UNet."""
        feeds = {"x_t": _numpy(x_t), "t": _numpy(t.float()), "conditioning": _numpy(context)}
        if spatial is not None:
            feeds["spatial"] = _numpy(spatial)
        return torch.from_numpy(self.step.run(None, feeds)[0])

    def predict(self, batch: dict) -> tuple[np.ndarray, np.ndarray]:
        """(heatmaps [B, O, O] in heatmap units, in/out probabilities [B]); noise from torch's global generator,
        as eval.evaluate.predict_heatmaps draws it (seed it the same way for the same samples). The formulation is
        built from `self.config` at each call, so a changed sampler option applies."""
        encoded = self.encode(batch)
        if self.direct:
            return encoded["heatmap"], encoded["inout"]
        kwargs = {"context": torch.from_numpy(encoded["conditioning"])}
        if "spatial" in encoded:
            kwargs["spatial"] = torch.from_numpy(encoded["spatial"])
        out = sample_conditioned(build_formulation(self.config), self.config, self.denoise, kwargs, batch,
                                 torch.device("cpu"))
        return out["heatmaps"].numpy(), encoded["inout"]


def _numpy(value) -> np.ndarray:
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    return np.ascontiguousarray(value, dtype=np.float32)
