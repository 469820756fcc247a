"""Load a checkpoint with the configuration it was trained with, and predict gaze for the people of one image.

Inputs are built by `datasets.transforms.model_inputs`, the function the datasets use, so a person is seen exactly as
in evaluation; heatmaps come from the configured formulation through `eval.evaluate.predict_heatmaps` (sampled by a
diffusion decoder, one pass of a direct one) and are read with `eval.metrics.argmax_point`
(the benchmarks' convention: the normalised top-left corner (col / W, row / H) of the argmax cell).
"""
from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from datasets.transforms import model_inputs
from engine.build import build_formulation
from engine.checkpoint import check_trainer, load_checkpoint
from engine.config import ConfigError, load_config
from engine.stored_config import evaluation_config, stored_configuration
from engine.train import autocast_for, resolve_device
from eval.evaluate import predict_heatmaps
from eval.metrics import argmax_point
from inference.sources import HeadBox, checked_head_box
from models.build import get_model
from pretrained.loading import (
    EMA_CONTAINERS, STATE_DICT_CONTAINERS, load_init_weights, load_safetensors, unwrap_state_dict,
)

# Options a loaded predictor may change without reading its weights again (`Predictor.with_options`).
SAMPLING_OPTIONS = ("sampler", "sample_time_steps", "sample_k", "ddim_eta", "seed")


WEIGHT_CHOICES = ("auto", "ema", "model")  # which weights of a checkpoint predict (auto: those the run evaluates)


@dataclass(frozen=True)
class PersonPrediction:
    """What the model predicts for one person in one image.

    head_box: the box used, pixels, clamped to the image. eye_point: the head-box centre in pixels (the line of the
    overlay starts there). heatmap: [O, O] in heatmap units (~[0, 1]). gaze_point: normalised (x, y) of the argmax
    cell. inout: probability in [0, 1] that the gaze target is inside the frame.
    """

    person: str
    head_box: np.ndarray
    eye_point: np.ndarray
    heatmap: np.ndarray
    gaze_point: tuple[float, float]
    inout: float
    head_score: float | None = None  # the detector's confidence when the head box was detected, else None
    gaze3d: Gaze3D | None = None  # with --gaze360_weights

    @property
    def heatmap_peak(self) -> float:
        """The heatmap's maximum (heatmap units, ~[0, 1]): how concentrated the prediction is."""
        return float(np.max(self.heatmap))


@dataclass(frozen=True)
class Gaze3D:
    """A 3D gaze direction from a Gaze360 model, in radians, in the Gaze360 eye coordinate system (+x left, +y up,
    +z away from the camera, as seen from the camera): yaw, pitch and the model's uncertainty sigma."""

    yaw: float
    pitch: float
    uncertainty: float

    @property
    def vector(self) -> np.ndarray:
        """Unit vector (x, y, z): x = cos p sin y, y = sin p, z = -cos p cos y (gaze360.data.yaw_pitch_to_gaze)."""
        return np.array([np.cos(self.pitch) * np.sin(self.yaw), np.sin(self.pitch),
                         -np.cos(self.pitch) * np.cos(self.yaw)])


class Predictor:
    """A trained model ready to predict: `Predictor(weights)`, then `predict(image, head_boxes)`.

    The model and the sampler follow the configuration stored in the checkpoint (`config` in files written by
    main.py); a weight file without one (a bare state dict, or another project's naming) needs `config_paths`, the
    YAML files it was trained with. `overrides` change options after that (e.g. device, sample_time_steps, seed),
    converted and checked like command-line flags. `use_weights`: "auto" (what the run evaluates), "ema" or
    "model" (an error when the file holds no such weights). `trust_legacy`: allow a full unpickling of a trusted
    file that needs it (option trust_legacy_checkpoint; see pretrained.files.load_checkpoint).
    """

    def __init__(self, weights: str | Path, config_paths: Sequence[str | Path] = (),
                 overrides: Mapping[str, object] | None = None, use_weights: str = "auto",
                 trust_legacy: bool = False):
        # hubconf passes it as an override; it says how this file is read, not an option of the model's configuration
        overrides = dict(overrides or {})
        trust_legacy = trust_legacy or bool(overrides.pop("trust_legacy_checkpoint", False))
        if use_weights not in WEIGHT_CHOICES:
            raise ValueError(f"use_weights must be one of {WEIGHT_CHOICES}, found {use_weights!r}")
        self.weights = Path(weights)
        if self.weights.suffix == ".safetensors":  # an export (pretrained.export): weights only, no configuration
            if not self.weights.is_file():
                raise FileNotFoundError(f"weights not found: {self.weights}")
            state, metadata = load_safetensors(self.weights)
            checkpoint, self.evaluated_weights = {"model": state}, metadata.get("evaluated_weights", "model")
            if use_weights not in ("auto", self.evaluated_weights):
                raise ValueError(f"{self.weights}: {use_weights} weights were asked for, but this export holds the "
                                 f"{self.evaluated_weights} weights (its metadata): export them from the checkpoint")
        else:  # FileNotFoundError naming the file when it is missing
            checkpoint = load_checkpoint(self.weights, trust_legacy=trust_legacy)
            check_trainer(checkpoint, self.weights, "main.py")  # a Gaze360 checkpoint goes to --gaze360_weights
        self.config = _config(self.weights, checkpoint, config_paths, overrides or {})
        if self.weights.suffix != ".safetensors":
            # A run trained with ema_on is evaluated with its averaged weights; prediction does the same.
            has_ema = any(isinstance(checkpoint.get(name), Mapping) for name in EMA_CONTAINERS)
            if use_weights == "ema" and not has_ema:
                raise ValueError(f"{self.weights}: the EMA weights were asked for, but the file holds none (no "
                                 f"{' / '.join(EMA_CONTAINERS)}: trained without ema_on)")
            self.evaluated_weights = (use_weights if use_weights != "auto"
                                      else "ema" if self.config.ema_on and "ema" in checkpoint else "model")
        self.device = resolve_device(self.config.device)
        self.model = get_model(self.config, init_backbone_weights=False)  # the checkpoint fills every weight
        containers = EMA_CONTAINERS if self.evaluated_weights == "ema" and self.weights.suffix != ".safetensors" \
            else STATE_DICT_CONTAINERS
        report = load_init_weights(self.model, unwrap_state_dict(checkpoint, str(self.weights), containers),
                                   scheme="auto", extra_rules=self.config.init_weights_rules)
        if report.missing:
            raise RuntimeError(f"{self.weights}: {len(report.missing)} model weights are missing, e.g. "
                               f"{report.missing[:5]}; cannot predict with a partly loaded model")
        memory_format = torch.channels_last if self.config.channels_last else torch.contiguous_format
        self.model.to(self.device, memory_format=memory_format).eval()
        self.load_report = report
        self.formulation = build_formulation(self.config)  # what is diffused (or decoded) and how it is sampled
        self.autocast = autocast_for(self.config, self.device)

    def predict(self, image: Image.Image, head_boxes: Sequence[HeadBox],
                image_name: str = "image") -> list[PersonPrediction]:
        """Predict every person of `image` (RGB) in one batch.

        Sampling noise comes from a generator seeded with the configuration's `seed` for every image, so an image's
        prediction depends only on the weights, the image, its head boxes (and their order) and the seed, not on the
        other images of a run. The global random state is left as it was.
        """
        if not head_boxes:
            return []
        boxes = [checked_head_box(head_box, image.size, image_name) for head_box in head_boxes]
        inputs = [model_inputs(image, box, self.config.input_size) for box in boxes]
        batch = {key: torch.stack([person[key] for person in inputs]) for key in ("image", "head_mask", "face")}
        if getattr(self.model.gaze_backbone, "person_independent_scene", False):
            # The backbone declares that its scene encoding does not depend on the person: it takes one image for
            # the whole batch of head masks and faces, so the scene is encoded once per frame.
            batch["image"] = batch["image"][:1]
        with torch.random.fork_rng(devices=[self.device] if self.device.type == "cuda" else []):
            torch.manual_seed(self.config.seed)
            heatmaps, inout = predict_heatmaps(self.model, self.formulation, self.config, batch, self.device,
                                               self.autocast)
        return [
            PersonPrediction(person=head_box.person, head_box=box, eye_point=(box[:2] + box[2:]) / 2,
                             heatmap=heatmap, gaze_point=argmax_point(heatmap), inout=float(score),
                             head_score=head_box.score)
            for head_box, box, heatmap, score in zip(head_boxes, boxes, heatmaps, inout)
        ]

    @property
    def generative(self) -> bool:
        """Whether the model's heatmap decoder samples (the number of samples K and of steps apply), as the model
        declares it (its `generative` attribute; a model that declares nothing predicts one map)."""
        return bool(getattr(self.model, "generative", False))

    def with_options(self, **options) -> "Predictor":
        """This predictor with other sampling options (SAMPLING_OPTIONS: e.g. sample_k, sample_time_steps), sharing
        the loaded model, so a change costs no reading of the weights (the web demo's sliders). Values are converted
        and checked like command-line flags."""
        unknown = sorted(set(options) - set(SAMPLING_OPTIONS))
        if unknown:
            raise ConfigError(f"with_options: {', '.join(unknown)} cannot change on a loaded predictor (only "
                              f"{', '.join(SAMPLING_OPTIONS)}); load the weights again with them as overrides")
        config = self.config.replace(**options)
        config.table.validate(config)
        clone = copy.copy(self)
        clone.config = config
        clone.formulation = build_formulation(config)
        return clone

    @property
    def sampler(self) -> str | None:
        """The sampler that runs (None for a direct heatmap decoder, which samples nothing)."""
        return self.formulation.summary()["sampler"]

    def settings(self) -> dict:
        """The settings a prediction was made with, for the JSON output."""
        sampling = self.formulation.summary()
        return {"weights": str(self.weights), "evaluated_weights": self.evaluated_weights,
                "device": str(self.device), "sampler": self.sampler,
                "sample_time_steps": sampling["sample_steps"], "sample_k": sampling["sample_k"],
                "ddim_eta": sampling["ddim_eta"], "heatmap_decoder": sampling["heatmap_decoder"],
                "formulation": sampling["formulation"],
                "seed": self.config.seed, "input_size": self.config.input_size,
                "output_size": self.config.output_size, "amp": self.config.amp}


def _config(weights: Path, checkpoint, config_paths: Sequence[str | Path], overrides: Mapping[str, object]):
    """The checkpoint's stored configuration (or the YAML files for a weight file without one), then `overrides`."""
    stored = stored_configuration(checkpoint)
    if stored is not None and config_paths:
        raise ConfigError(f"{weights} stores the configuration it was trained with; --config "
                          f"{' '.join(map(str, config_paths))} would contradict it (change single options with "
                          "their flags instead)")
    if stored is None and not config_paths:
        raise ConfigError(f"{weights} stores no configuration (a bare state dict or another project's checkpoint): "
                          "pass --config with the YAML file(s) it was trained with")
    try:
        if stored is None:
            return load_config(config_paths, overrides)
        # The stored configuration; flags may change evaluation-time options only (as main.py --eval_weights).
        return evaluation_config(checkpoint, {name: (value, f"--{name}") for name, value in overrides.items()},
                                 weights=str(weights))[0]
    except ConfigError as error:
        where = "the configuration stored in it" if stored is not None else "the --config files"
        raise ConfigError(f"{weights}: {where}, with the overrides {dict(overrides)}: {error}") from error
