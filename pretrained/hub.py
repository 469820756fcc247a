"""Hub-style checkpoints: a trained model as a folder the Hugging Face Hub serves, saved, loaded (offline from a local
folder or the Hub cache) and pushed with huggingface_hub's `ModelHubMixin`.

    DIR/model.safetensors  the evaluated weights (this project's key names; metadata: evaluated_weights, source)
    DIR/config.json        every option of the run as its checkpoint stores it (JSON is YAML, so
                           `python main.py --yaml_diffusion DIR/config.json` trains the same configuration again)
    DIR/training.json      where the weights come from: the checkpoint, its epoch and step, its evaluation's metrics
    DIR/README.md          the model card, generated from the two JSON files

Everything that reads a checkpoint (predict.py, `main.py --eval_weights`, `--init_weights`, the web demo,
`pretrained.export`) reads such a folder, or a Hub repository named `hf-hub:OWNER/NAME[@REVISION]`, through
`pretrained.files.load_checkpoint`, which hands it over as a checkpoint of main.py's layout (`as_checkpoint`). With
HF_HUB_OFFLINE=1 a repository is read from the local Hub cache only.

    python -m pretrained.export output/run1/last.pt run1_hub --format hub      # write a folder
    python -m pretrained.hub push run1_hub OWNER/NAME                           # upload it
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Mapping

import torch
from huggingface_hub import ModelCard, ModelCardData, ModelHubMixin, hf_hub_download
from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

from formulations import stored_formulation_class
from pretrained.files import HUB_PREFIX, CheckpointError, load_checkpoint, load_safetensors

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
TRAINING_NAME = "training.json"
CARD_NAME = "README.md"
WEIGHTS_FORMAT = "diffusion-gaze"  # the safetensors metadata "format" of the project's weight files (pretrained.export)
EVALUATED_WEIGHTS = ("model", "ema")
METRIC_NAMES = ("auc", "min_l2", "avg_l2", "min_ang", "avg_ang", "heatmap_ap", "inout_ap")
DATASET_NAMES = {"gazefollow": "GazeFollow", "videoattentiontarget": "VideoAttentionTarget", "goo": "GOO"}


class HubCheckpoint(ModelHubMixin, library_name="diffusion-gaze", tags=["gaze-following", "diffusion", "pytorch"]):
    """A trained model as the Hub stores it: `state_dict` (the weights it is evaluated with, this project's names),
    `config` (every option, as main.py's checkpoints store it), `evaluated_weights` ("model", or "ema": the
    exponential moving average) and `training` (provenance: source checkpoint, epoch, step, metrics).

    `save_pretrained(DIR)`, `HubCheckpoint.from_pretrained(DIR_OR_REPO_ID)` and `push_to_hub(REPO_ID)` come from
    huggingface_hub's ModelHubMixin; a round trip returns the same tensors bit for bit and the same dictionaries.
    Build one from a run's checkpoint with `from_checkpoint`, or from a live model with
    `HubCheckpoint(model.state_dict(), config.to_dict())`; predict with `inference.predictor.Predictor(DIR)`.
    """

    def __init__(self, state_dict: Mapping[str, torch.Tensor], config: Mapping[str, Any],
                 evaluated_weights: str = "model", training: Mapping[str, Any] | None = None):
        if evaluated_weights not in EVALUATED_WEIGHTS:
            raise ValueError(f"evaluated_weights: expected one of {EVALUATED_WEIGHTS}, found {evaluated_weights!r}")
        not_tensors = [key for key, value in state_dict.items() if not isinstance(value, torch.Tensor)]
        if not_tensors:
            raise ValueError(f"state_dict entries that are not tensors: {not_tensors[:5]}")
        self.state_dict = dict(state_dict)
        self.config = dict(config)
        self.evaluated_weights = evaluated_weights
        self.training = dict(training or {})

    @classmethod
    def from_checkpoint(cls, checkpoint_path: str | Path, weights: str = "auto", scheme: str = "auto",
                        trust_legacy: bool = False, metrics: str | Path | None = None) -> "HubCheckpoint":
        """The weights `pretrained.export` exports from a checkpoint written by main.py (`weights`: auto = what the
        run evaluates, ema or model), its stored configuration, and its provenance. Metrics: the `metrics` file (a
        metrics.json), else the run folder's metrics.json when it reports the evaluation at the checkpoint's step."""
        from pretrained.export import export_safetensors  # the one place that chooses and renames the weights

        checkpoint_path = Path(checkpoint_path)
        checkpoint = load_checkpoint(checkpoint_path, trust_legacy=trust_legacy)
        config = checkpoint.get("config") if isinstance(checkpoint, Mapping) else None
        if not isinstance(config, Mapping):
            raise CheckpointError(
                f"{checkpoint_path}: stores no configuration (a bare state dict or another project's checkpoint); a "
                "Hub folder needs the configuration the weights were trained with: export a checkpoint written by "
                "main.py, or build one in Python with HubCheckpoint(state_dict, config.to_dict())")
        with tempfile.TemporaryDirectory(prefix="hub-export-") as staging:
            exported = Path(staging) / WEIGHTS_NAME
            export_safetensors(checkpoint_path, exported, weights, scheme, trust_legacy)
            state, metadata = load_safetensors(exported)
        training = {"source": str(checkpoint_path), "epoch": checkpoint.get("epoch"), "step": checkpoint.get("step")}
        found = _metrics(checkpoint_path, checkpoint.get("step"), metrics)
        if found is not None:
            training["metrics"] = found
        return cls(state, config, metadata["evaluated_weights"], training)

    def as_checkpoint(self) -> dict[str, Any]:
        """This model in the layout of a main.py checkpoint, as every loader of the project reads it: the stored
        configuration under "config" and the weights under "model" (and also under "ema" when they are the average,
        so evaluation and prediction name them so). A folder holds one set of weights: when they are the model's of
        a run trained with ema_on, the configuration handed over says ema_on false, so they are evaluated as what
        they are."""
        config = dict(self.config)
        if self.evaluated_weights == "model" and config.get("ema_on"):
            config["ema_on"] = False
        view = {"format": "hub", "config": config, "model": self.state_dict}  # "format": this project's file
        if self.evaluated_weights == "ema":
            view["ema"] = self.state_dict
        return view

    # --- ModelHubMixin ----------------------------------------------------------------------------------------------

    def _save_pretrained(self, save_directory: Path) -> None:
        """Write the four files into a staging folder inside `save_directory`, then move each into place
        (os.replace), so an interrupted save never leaves a half-written file under a final name."""
        from safetensors.torch import save_file

        save_directory = Path(save_directory)
        files = {CONFIG_NAME: _json(self.config, CONFIG_NAME), TRAINING_NAME: _json(self.training, TRAINING_NAME),
                 CARD_NAME: str(self.generate_model_card())}
        with tempfile.TemporaryDirectory(prefix=".saving-", dir=save_directory) as staging:
            staging = Path(staging)
            # safetensors needs contiguous tensors that share no storage.
            tensors = {key: value.detach().cpu().contiguous().clone() for key, value in self.state_dict.items()}
            save_file(tensors, staging / WEIGHTS_NAME, metadata={
                "format": WEIGHTS_FORMAT, "evaluated_weights": self.evaluated_weights,
                "source": str(self.training.get("source", "HubCheckpoint")), "scheme": "project"})
            for name, text in files.items():
                (staging / name).write_text(text, encoding="utf-8")
            umask = os.umask(0)
            os.umask(umask)
            for name in (WEIGHTS_NAME, *files):
                os.chmod(staging / name, 0o666 & ~umask)  # as an ordinary file (safetensors writes it 0600)
                os.replace(staging / name, save_directory / name)

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | Path, **kwargs) -> "HubCheckpoint":
        """A folder written by `save_pretrained`, or a Hub repository ID (downloaded into the Hub cache, or read
        from it with `local_files_only=True` or HF_HUB_OFFLINE=1). kwargs: revision, cache_dir, local_files_only,
        force_download, token (ModelHubMixin.from_pretrained)."""
        reference = str(pretrained_model_name_or_path)
        if os.path.isdir(reference):
            missing = [name for name in (CONFIG_NAME, WEIGHTS_NAME) if not (Path(reference) / name).is_file()]
            if missing:
                raise CheckpointError(_not_a_hub_folder(Path(reference), missing))
        try:
            return super().from_pretrained(reference, **kwargs)
        except (HfHubHTTPError, LocalEntryNotFoundError) as error:
            offline = "; offline (HF_HUB_OFFLINE or local_files_only), only the local Hub cache is read" if (
                isinstance(error, LocalEntryNotFoundError)) else ""
            raise FileNotFoundError(
                f"{reference}: not a local folder, and the Hub repository could not be read{offline} "
                f"({type(error).__name__}: {str(error).splitlines()[0][:200]})") from None

    @classmethod
    def _from_pretrained(cls, *, model_id: str, revision: str | None = None, cache_dir=None,
                         force_download: bool = False, local_files_only: bool = False, token=None,
                         config: Mapping[str, Any] | None = None, **unused) -> "HubCheckpoint":
        if config is None:
            raise CheckpointError(f"{model_id}: has no {CONFIG_NAME} (the configuration the weights were trained "
                                  "with); it was not written by save_pretrained / pretrained.export --format hub")

        def fetch(name: str) -> Path:
            if os.path.isdir(model_id):
                return Path(model_id) / name
            return Path(hf_hub_download(repo_id=model_id, filename=name, revision=revision, cache_dir=cache_dir,
                                        force_download=force_download, local_files_only=local_files_only,
                                        token=token))

        state, metadata = load_safetensors(fetch(WEIGHTS_NAME))
        evaluated = metadata.get("evaluated_weights", "model")
        try:
            training_path = fetch(TRAINING_NAME)
            training = json.loads(training_path.read_text(encoding="utf-8")) if training_path.is_file() else {}
        except (HfHubHTTPError, LocalEntryNotFoundError):  # optional: a folder made without provenance
            training = {}
        return cls(state, config, evaluated, training)

    def generate_model_card(self, *args, **kwargs) -> ModelCard:
        """The model card: the Hub's metadata block (library, tags, dataset, metrics) and a page that says what the
        model is, what it was trained on, how well it did and the commands that reproduce, evaluate and run it."""
        return ModelCard(model_card(self.config, self.training, self.evaluated_weights,
                                    self._hub_mixin_info.model_card_data))


def model_card(config: Mapping[str, Any], training: Mapping[str, Any], evaluated_weights: str,
               base_data: ModelCardData | None = None) -> str:
    """The README.md of a Hub folder, generated from its configuration and provenance (see HubCheckpoint)."""
    dataset = str(config.get("source_dataset", "unknown"))
    dataset_name = DATASET_NAMES.get(dataset, dataset)
    metrics = dict(training.get("metrics") or {})
    values = {name: metrics[name] for name in METRIC_NAMES if isinstance(metrics.get(name), (int, float))}
    data = ModelCardData(**(base_data.to_dict() if base_data is not None else {}))
    data.datasets = [dataset]
    data.metrics = list(values) or None
    backbone = config.get("gaze_backbone", "resnet")
    formulation = stored_formulation_class(config)
    decoder = (f"{formulation.name} diffusion" if formulation.diffuses
               else f"{config.get('heatmap_decoder')} direct heatmap decoder")
    sampling = (f"The heatmap is sampled with `{config.get('sampler', 'auto')}` in {config.get('sample_time_steps')} "
                "steps" + (f", the mean of K = {config.get('sample_k')} samples." if config.get("sample_k", 1) > 1
                           else ".")) if formulation.diffuses else "The heatmap is predicted in one forward pass."
    lines = [
        f"# Gaze following: {backbone} gaze backbone, {decoder} ({dataset_name})",
        "",
        "A gaze-following model of the diffusion gaze-following framework: for a person (a head box in an image) it "
        "predicts a gaze heatmap, the gaze point (its argmax) and the probability that the gaze target is inside "
        f"the frame. {sampling}",
        "",
        "## Files",
        "",
        f"- `{WEIGHTS_NAME}`: the {_weights_words(evaluated_weights)}, this project's parameter names.",
        f"- `{CONFIG_NAME}`: every option of the run, as its checkpoint stores it (input {config.get('input_size')} "
        f"px, heatmap {config.get('output_size')} x {config.get('output_size')}, {config.get('train_time_steps')} "
        "training steps of the diffusion process).",
        f"- `{TRAINING_NAME}`: where the weights come from and the metrics below.",
        "",
        "## Training data",
        "",
        f"- Dataset: {dataset_name} (`source_dataset: {dataset}`), read from `{config.get('source_dataset_dir')}` "
        "on the training machine.",
        f"- Trained for {training.get('epoch', '?')} epoch(s) ({training.get('step', '?')} optimisation steps), batch "
        f"size {config.get('batch_size')}, seed {config.get('seed')}; source checkpoint "
        f"`{training.get('source', '?')}`.",
        "",
        "## Metrics",
        "",
    ]
    if values:
        lines += ["| metric | value |", "|---|---|"]
        lines += [f"| {name} | {value:.4f} |" for name, value in values.items()]
        described = [f"{metrics[key]}" for key in ("protocol_description",) if metrics.get(key)]
        lines += ["", f"Evaluated on {metrics.get('n_samples', '?')} test samples of "
                  f"{metrics.get('dataset', dataset_name)} with `{metrics.get('sampler', config.get('sampler'))}`, "
                  f"{metrics.get('sample_steps', config.get('sample_time_steps'))} steps, K = "
                  f"{metrics.get('sample_k', config.get('sample_k'))}, weights: "
                  f"{metrics.get('evaluated_weights', evaluated_weights)}; computed by main.py's evaluation of "
                  f"`{metrics.get('weights', training.get('source', '?'))}`.", *described]
    else:
        lines += ["Not evaluated at the exported step (no metrics were found for it); evaluate it with the command "
                  "below."]
    lines += [
        "",
        "## Commands",
        "",
        "From the project's root, with this folder at `DIR` (or `hf-hub:OWNER/NAME` for the Hub repository):",
        "",
        "```bash",
        "# the same configuration trained again (JSON is YAML; change the data folder and the run's name as needed)",
        "python main.py --yaml_diffusion DIR/config.json --source_dataset_dir DATA --tag retrained",
        "# evaluate these weights with the dataset's protocol",
        "python main.py --eval_weights DIR --source_dataset_dir DATA",
        "# predict on an image or a video (heads detected with MTCNN), or try it in the browser",
        "python predict.py --weights DIR --image IMAGE.jpg",
        "python -m inference.app --weights DIR",
        "```",
        "",
        "In Python: `HubCheckpoint.from_pretrained(DIR)` (pretrained/hub.py) gives the weights and configuration; "
        "`inference.predictor.Predictor(DIR)` predicts.",
    ]
    if values:
        from huggingface_hub import EvalResult

        data.eval_results = [EvalResult(task_type="gaze-following", dataset_type=dataset, dataset_name=dataset_name,
                                        metric_type=name, metric_value=value) for name, value in values.items()]
        data.model_name = Path(str(training.get("source", "model"))).parent.name or "model"
    return f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines) + "\n"


def load_hub_checkpoint(reference: str | os.PathLike) -> dict[str, Any]:
    """`HubCheckpoint.from_pretrained(...).as_checkpoint()` for a folder or `hf-hub:OWNER/NAME[@REVISION]`."""
    text = str(reference)
    if text.startswith(HUB_PREFIX):
        repo_id, _, revision = text[len(HUB_PREFIX):].partition("@")
        if repo_id.count("/") != 1 or not all(repo_id.split("/")):
            raise ValueError(f"{text}: expected {HUB_PREFIX}OWNER/NAME or {HUB_PREFIX}OWNER/NAME@REVISION")
        return HubCheckpoint.from_pretrained(repo_id, revision=revision or None).as_checkpoint()
    return HubCheckpoint.from_pretrained(text).as_checkpoint()


def export_hub(checkpoint_path: str | Path, directory: str | Path, weights: str = "auto", scheme: str = "auto",
               trust_legacy: bool = False, metrics: str | Path | None = None) -> HubCheckpoint:
    """`python -m pretrained.export CKPT DIR --format hub`: HubCheckpoint.from_checkpoint(...).save_pretrained(DIR)."""
    hub = HubCheckpoint.from_checkpoint(checkpoint_path, weights, scheme, trust_legacy, metrics)
    hub.save_pretrained(directory)
    return hub


def _metrics(checkpoint_path: Path, step: int | None, metrics: str | Path | None) -> dict[str, Any] | None:
    """The metrics that describe the checkpoint: the given metrics.json, or the run folder's metrics.json when the
    run's log (metrics.jsonl) has an evaluation at the checkpoint's step with the same numbers (a later evaluation,
    e.g. after a resumed run went on, describes other weights)."""
    if metrics is not None:
        path = Path(metrics)
        if not path.is_file():
            raise FileNotFoundError(f"metrics file not found: {path}")
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except ValueError as error:
            raise ValueError(f"{path}: not a JSON metrics file ({error})") from None
    folder = checkpoint_path.parent
    summary_path, log_path = folder / "metrics.json", folder / "metrics.jsonl"
    if step is None or not summary_path.is_file() or not log_path.is_file():
        return None
    try:
        summary = json.loads(summary_path.read_text(encoding="utf-8"))
        records = [json.loads(line) for line in log_path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except ValueError:
        return None  # a torn log line: the metrics cannot be matched to the step
    evaluations = [r for r in records if isinstance(r, dict) and r.get("type") == "eval" and r.get("step") == step]
    if not evaluations or any(evaluations[-1].get(name) != summary.get(name) for name in METRIC_NAMES
                              if name in evaluations[-1]):
        return None
    return {**summary, "step": step}


def _json(value: Mapping[str, Any], name: str) -> str:
    try:
        return json.dumps(value, indent=2, allow_nan=False) + "\n"
    except ValueError as error:  # JSON has no inf / nan
        bad = [key for key, v in value.items() if isinstance(v, float) and not math.isfinite(v)]
        raise ValueError(f"{name}: cannot be written as JSON: {', '.join(bad) or error} not finite") from None


def _weights_words(evaluated_weights: str) -> str:
    return ("exponential moving average of the weights (the run's `ema_on`)" if evaluated_weights == "ema"
            else "trained weights (not averaged)")


def _not_a_hub_folder(folder: Path, missing: list[str]) -> str:
    hint = (f"; it holds a training run: pass its checkpoint ({folder / 'last.pt'}) or export it with "
            f"`python -m pretrained.export {folder / 'last.pt'} OUT_DIR --format hub`"
            if (folder / "last.pt").is_file() else
            "; write one with save_pretrained or `python -m pretrained.export CHECKPOINT OUT_DIR --format hub`")
    return f"{folder}: not a Hub-style folder: {', '.join(missing)} missing{hint}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pretrained.hub", description="Upload a Hub-style folder.")
    commands = parser.add_subparsers(dest="command", required=True)
    push = commands.add_parser("push", help="upload a folder written by save_pretrained / export --format hub")
    push.add_argument("directory")
    push.add_argument("repo_id", help="OWNER/NAME on the Hub (created if it does not exist)")
    push.add_argument("--private", action="store_true", help="create the repository as private")
    args = parser.parse_args(argv)
    try:
        hub = HubCheckpoint.from_pretrained(args.directory)
        url = hub.push_to_hub(args.repo_id, private=args.private or None)
    except (CheckpointError, FileNotFoundError, ValueError, HfHubHTTPError) as error:
        print(f"python -m pretrained.hub: error: {error}", file=sys.stderr)
        return 2
    print(f"pushed {args.directory} to {args.repo_id}: {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
