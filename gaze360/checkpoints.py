"""Weights of the original MultiZoomGaze / Gaze360 code in this project's model (gaze360.models).

The originals save `{'epoch', 'state_dict', 'best_prec1'}` with DataParallel's `module.` prefix on every key; their
module names map one to one onto this project's (the layer order being the same, see gaze360.models):

| original | here |
|---|---|
| base_model.{conv1,bn1,layer1..4} (ResNet-18 trunk) | backbone.{...} |
| base_model.fc1 (512 -> 1000), or base_model_tail.2 in the multi-crop MSA models | backbone.fc |
| base_model.fc2 (1000 -> 256), or base_model_tail.4 | feature |
| lstm | lstm |
| last_layer (Gaze360's first code: hidden2tag) | head |

Every key of the file must map onto a tensor of the model with the same shape and every tensor of the model must
be filled (BatchNorm's `num_batches_tracked`, absent from pre-0.4.1 files, excepted: it does not change outputs).
A file that cannot be used is a CheckpointError (a ValueError) naming it: one line from gaze360_main.py.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Mapping

import torch
from torch import nn

from pretrained.files import CheckpointError, check_trainer
from pretrained.renaming import rename_keys

ORIGINAL_RULES = [
    (r"base_model_tail\.2\.", "backbone.fc."),
    (r"base_model_tail\.4\.", "feature."),
    (r"base_model\.fc1\.", "backbone.fc."),
    (r"base_model\.fc2\.", "feature."),
    (r"base_model\.", "backbone."),
    (r"lstm\.", "lstm."),
    (r"last_layer\.", "head."),
    (r"hidden2tag\.", "head."),  # Gaze360's first published code named its output layer so
]


def is_original_checkpoint(checkpoint) -> bool:
    """An original .pth.tar: a dict with 'state_dict' and none of this trainer's keys ('model', 'format')."""
    return isinstance(checkpoint, Mapping) and isinstance(checkpoint.get("state_dict"), Mapping) \
        and "model" not in checkpoint and "format" not in checkpoint


def convert_original_state_dict(state: Mapping[str, torch.Tensor], model: nn.Module,
                                source: str = "checkpoint") -> tuple[dict[str, torch.Tensor], str]:
    """(this model's state dict, a report) from an original state dict; any key left unmapped, any model tensor
    left unfilled and any shape mismatch is an error naming the keys."""
    state = dict(state)
    if state and all(key.startswith("module.") for key in state):
        state = {key[len("module."):]: value for key, value in state.items()}
    renamed, dropped, unmatched = rename_keys(state, ORIGINAL_RULES)
    target = model.state_dict()
    unexpected = [old for old, new in renamed.items() if new not in target] + unmatched + dropped
    if unexpected:
        raise CheckpointError(f"{source}: {len(unexpected)} tensors have no place in this model (check temporal, "
                              f"target, backbone options against the original model type), e.g. "
                              f"{[(k, renamed.get(k)) for k in unexpected[:6]]}")
    converted = {new: state[old] for old, new in renamed.items()}
    mismatched = [(k, list(v.shape), list(target[k].shape)) for k, v in converted.items() if v.shape != target[k].shape]
    if mismatched:
        raise CheckpointError(f"{source}: shape mismatch (key, file, model): {mismatched[:6]}")
    missing = [k for k in target if k not in converted]
    counters = [k for k in missing if k.endswith("num_batches_tracked")]
    missing = [k for k in missing if k not in counters]
    if missing:
        raise CheckpointError(f"{source}: {len(missing)} tensors of this model are not in the file, e.g. "
                              f"{missing[:6]}")
    for key in counters:
        converted[key] = target[key]
    per_rule = Counter(next(p for p, r in ORIGINAL_RULES if old.startswith(p.replace("\\", ""))) for old in renamed)
    lines = [f"{source}: original MultiZoomGaze/Gaze360 weights, {len(renamed)} tensors mapped, none left over"]
    lines += [f"  {pattern.replace(chr(92), '')}* -> {replacement}*: {per_rule[pattern]}"
              for pattern, replacement in ORIGINAL_RULES if per_rule[pattern]]
    if counters:
        lines.append(f"  {len(counters)} BatchNorm num_batches_tracked counters not in the file (kept; no effect "
                     f"on outputs)")
    return converted, "\n".join(lines)


def model_state_from_checkpoint(checkpoint, model: nn.Module, source: str) -> tuple[dict[str, torch.Tensor], str]:
    """The model state dict in a checkpoint of this trainer ({'model': ...} or a bare state dict) or an original
    .pth.tar (converted), with a one-line or per-rule report."""
    check_trainer(checkpoint, source, "gaze360_main.py")  # a gaze-following checkpoint says so
    if is_original_checkpoint(checkpoint):
        return convert_original_state_dict(checkpoint["state_dict"], model, source)
    stored = checkpoint.get("config") if isinstance(checkpoint, Mapping) else None
    if isinstance(stored, Mapping) and "feature_relu" not in stored:
        raise CheckpointError(f"{source}: written by this trainer before its networks became the original's (ReLU "
                              f"after the backbone fc, none after the feature layer unless feature_relu): its weights "
                              f"compute a different function in today's model; retrain, or evaluate it with the "
                              f"project version that wrote it")
    state = checkpoint["model"] if isinstance(checkpoint, Mapping) and "model" in checkpoint else checkpoint
    if not isinstance(state, Mapping):
        raise CheckpointError(f"{source}: expected a checkpoint of this trainer or an original .pth.tar, found "
                              f"{type(checkpoint).__name__}")
    return dict(state), f"{source}: this trainer's checkpoint, {len(state)} tensors"
