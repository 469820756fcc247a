"""--eval_weights on checkpoints of the original DiffusionGaze code: its EMA is evaluated as the original did (the gaze
backbone's own weights, the averaged UNet and in/out head; original main.py, evaluation branch) unless
`original_ema_mix` is off; metrics.json names the weights; init_weights_scheme / init_weights_rules rename the file
(the rules alone when no known naming is detected)."""
import json
import re

import pytest
import torch
import torch.nn.functional as F

from engine.train import run
from models.build import get_model
from pretrained.loading import load_eval_weights
from tests.tiny_runs import TO_DIFFUSIONGAZE, make_tiny_dataset, tiny_config

ORIGINAL_ORDER = ("gaze_model.", "model.", "sequential.", "fc_inout.")  # its modules' registration order


def to_original(state: dict) -> dict:
    renamed = {}
    for key, value in state.items():
        pattern, replacement = next(rule for rule in TO_DIFFUSIONGAZE if re.match(rule[0], key))
        renamed[re.sub(pattern, replacement, key, count=1)] = value
    return dict(sorted(renamed.items(), key=lambda item: [item[0].startswith(p) for p in ORIGINAL_ORDER].index(True)))


def two_weight_sets(model) -> tuple[dict, dict]:
    """(weights, their 'average'): distinct random floating tensors; integer buffers equal."""
    generator = torch.Generator().manual_seed(0)
    weights = {k: (v + 0.01 * torch.rand(v.shape, generator=generator) if v.is_floating_point() else v.clone())
               for k, v in model.state_dict().items()}
    averaged = {k: (v + 0.001 if v.is_floating_point() else v.clone()) for k, v in weights.items()}
    return weights, averaged


@pytest.fixture()
def original_checkpoint(tmp_path):
    config = tiny_config(tmp_path / "data", tmp_path, "probe")
    weights, averaged = two_weight_sets(get_model(config))
    path = tmp_path / "ckpt_epoch_30.pth"
    # The original's file: model_state_dict, ema_params (a full state dict), a pickled loss function, epoch, run_id.
    torch.save({"model_state_dict": to_original(weights), "ema_params": to_original(averaged),
                "optimizer_state_dict": {}, "mse_loss": F.mse_loss, "epoch": 30, "run_id": None}, path)
    return path, weights, averaged


def loaded_from(model, weights, averaged) -> dict[str, str]:
    """For each part of the model: 'model' or 'ema', whichever set its floating tensors equal."""
    state = model.state_dict()
    parts = {}
    for prefix in ("gaze_backbone.", "unet.", "inout_head."):
        keys = [k for k in state if k.startswith(prefix) and state[k].is_floating_point()]
        if all(torch.equal(state[k], weights[k]) for k in keys):
            parts[prefix[:-1]] = "model"
        elif all(torch.equal(state[k], averaged[k]) for k in keys):
            parts[prefix[:-1]] = "ema"
        else:
            parts[prefix[:-1]] = "mixed"
    return parts


def test_original_ema_is_evaluated_as_the_original_did_unless_switched(original_checkpoint, tmp_path):
    path, weights, averaged = original_checkpoint
    flags = ("--eval_weights", str(path), "--trust_legacy_checkpoint")
    cases = {(): ("model", {"gaze_backbone": "model", "unet": "model", "inout_head": "model"}),
             ("--ema_on",): ("ema_original_mix", {"gaze_backbone": "model", "unet": "ema", "inout_head": "ema"}),
             ("--ema_on", "--original_ema_mix", "false"): ("ema", {"gaze_backbone": "ema", "unet": "ema",
                                                                   "inout_head": "ema"})}
    for extra, (kind, parts) in cases.items():
        config = tiny_config(tmp_path / "data", tmp_path, "eval", *flags, *extra)
        model = get_model(config)
        report, evaluated = load_eval_weights(model, config)
        assert not report.missing and not report.unexpected and report.scheme == "diffusiongaze"
        assert evaluated == kind and loaded_from(model, weights, averaged) == parts


def test_metrics_json_names_the_mix(original_checkpoint, tmp_path, single_thread):
    path, _, _ = original_checkpoint
    dataset = make_tiny_dataset(tmp_path / "data")
    config = tiny_config(dataset, tmp_path, "eval_mix", "--eval_weights", str(path), "--trust_legacy_checkpoint",
                         "--ema_on", "--sample_time_steps", "1")
    summary = run(config)
    written = json.loads((tmp_path / "eval_mix" / "metrics.json").read_text())
    assert summary["evaluated_weights"] == written["evaluated_weights"] == "ema_original_mix"
    assert "gaze backbone's own weights" in written["evaluated_weights_description"]


def test_eval_weights_apply_the_scheme_and_the_rules(tmp_path):
    config = tiny_config(tmp_path / "data", tmp_path, "rules")
    model = get_model(config)
    weights, _ = two_weight_sets(model)
    path = tmp_path / "custom.pt"
    torch.save({"state_dict": {f"net.{key}": value for key, value in weights.items()}}, path)  # no known naming
    config = config.replace(eval_weights=str(path))
    with pytest.raises(ValueError, match="cannot detect the checkpoint's naming scheme"):
        load_eval_weights(get_model(config), config)
    config = config.replace(init_weights_rules=[[r"net\.", ""]])  # tried when detection fails
    report, kind = load_eval_weights(model, config)
    assert kind == "model" and not report.missing and report.scheme == "custom"
    assert loaded_from(model, weights, weights)["unet"] == "model"
    plain = tmp_path / "plain.pt"
    torch.save({"model": weights}, plain)  # this project's naming, read as the scheme says
    config = config.replace(eval_weights=str(plain), init_weights_rules=None, init_weights_scheme="chong")
    report, _ = load_eval_weights(get_model(config), config)
    assert report.scheme == "chong" and report.missing
