"""Key-renaming rules from other projects' checkpoints to this project's parameter names.

A scheme is an ordered list of (pattern, replacement) rules. The first rule whose regular expression matches at the
start of a key wins; the matched prefix is replaced (`\\1` groups allowed) and the rest of the key is kept. A
replacement of None marks keys that have no place in this project (e.g. Chong et al.'s heatmap decoder, which the
UNet replaces): they are reported as dropped, never loaded. Keys that no rule matches are reported as unmatched.
"""

import re
from typing import Iterable, Mapping

RenameRule = tuple[str, str | None]

SCHEMES: dict[str, list[RenameRule]] = {
    # This project's own checkpoints.
    "project": [
        (r"(gaze_backbone|unet|heatmap_decoder|inout_head)\.", r"\1."),  # heatmap_decoder: a plug-in decoder's
    ],
    # ejcgt/attention-target-detection (Chong et al. 2020): flat module names.
    "chong": [
        (r"(conv1|bn1|layer\d+)_(scene|face)\.", r"gaze_backbone.\2_backbone.\1."),
        (r"attn\.", "gaze_backbone.attn."),
        (r"compress_(conv|bn)(\d)_inout\.", r"inout_head.\1\2."),
        (r"fc_inout\.", "inout_head.fc."),
        (r"compress_(conv|bn)(\d)\.", r"gaze_backbone.scene_encoder.\1\2."),
        (r"(deconv\d|deconv_bn\d|conv4)\.", None),  # heatmap decoder: replaced by the UNet
    ],
    # francescotonini/multimodal-across-domains-gaze-target-detection (Tonini et al., ICMI 2022), and the widely used
    # init_weights.pt (Chong's weights in this naming plus a depth branch).
    "tonini": [
        (r"(scene_backbone|face_backbone|depth_backbone|attn|scene_encoder|depth_encoder)\.", r"gaze_backbone.\1."),
        (r"inout_decoder\.", "inout_head."),
        (r"decoder\.", None),  # heatmap decoder: replaced by the UNet
    ],
    # Mostafa-Haggag/DiffusionGazeFollowingModel (DiffusionGaze).
    "diffusiongaze": [
        (r"gaze_model\.postional_embedding_1\.penc\.", "gaze_backbone.scene_positional_encoding."),
        (r"gaze_model\.postional_embedding_2\.penc\.", "gaze_backbone.face_positional_encoding."),
        (r"gaze_model\.", "gaze_backbone."),
        (r"model\.", "unet."),
        (r"sequential\.0\.", "inout_head.conv1."),
        (r"sequential\.1\.", "inout_head.bn1."),
        (r"sequential\.3\.", "inout_head.conv2."),
        (r"sequential\.4\.", "inout_head.bn2."),
        (r"fc_inout\.", "inout_head.fc."),
    ],
}


def rules_from_spec(spec: Iterable | Mapping) -> list[RenameRule]:
    """Rules from a YAML-friendly spec: a mapping {pattern: replacement}, or a list of [pattern, replacement]
    pairs or of {"pattern": ..., "replacement": ...} mappings (replacement null = no place in this project)."""
    items = spec.items() if isinstance(spec, Mapping) else spec
    rules = []
    for index, item in enumerate(items):
        if isinstance(item, Mapping):
            if set(item) != {"pattern", "replacement"}:
                raise ValueError(f"renaming rule #{index} {dict(item)} must have exactly the keys pattern, replacement")
            item = (item["pattern"], item["replacement"])
        if not (isinstance(item, (tuple, list)) and len(item) == 2):
            raise ValueError(f"renaming rule #{index} must be a (pattern, replacement) pair, got {item!r}")
        pattern, replacement = item
        if not isinstance(pattern, str) or not (replacement is None or isinstance(replacement, str)):
            raise ValueError(f"renaming rule #{index} needs a string pattern and a string or null replacement, "
                             f"got {item!r}")
        try:
            re.compile(pattern)
        except re.error as error:
            raise ValueError(f"renaming rule #{index}: pattern {pattern!r} is not a regular expression ({error})")
        rules.append((pattern, replacement))
    return rules


def rename_key(key: str, rules: list[RenameRule]) -> tuple[str | None, bool]:
    """(new key or None if dropped, whether a rule matched). An unmatched key is returned unchanged."""
    for pattern, replacement in rules:
        match = re.match(pattern, key)
        if match:
            if replacement is None:
                return None, True
            return match.expand(replacement) + key[match.end():], True
    return key, False


def rename_keys(keys: Iterable[str], rules: list[RenameRule]) -> tuple[dict[str, str], list[str], list[str]]:
    """Apply rules to keys: ({old: new} for renamed keys, dropped keys, unmatched keys).

    Two keys renamed to the same target is an error (the scheme is ambiguous for this checkpoint)."""
    renamed, dropped, unmatched = {}, [], []
    targets: dict[str, str] = {}
    for key in keys:
        new_key, matched = rename_key(key, rules)
        if not matched:
            unmatched.append(key)
        elif new_key is None:
            dropped.append(key)
        else:
            if new_key in targets:
                raise ValueError(f"renaming maps both {targets[new_key]!r} and {key!r} to {new_key!r}")
            targets[new_key] = key
            renamed[key] = new_key
    return renamed, dropped, unmatched
