"""YAML files of the original DiffusionGaze code, read with the meanings the original gave them.

A file is in the original's layout when it groups its keys under the original's section names (`Dataset`,
`Diffusion`, `experiment_parameter`, `losses_parameters`, `Gaze`). Every key keeps its value, except where the original
code gave a key another meaning than this project's option of the same name:

- `adm` was never read: the original always ran the ADM formulation configured by the `adm_*` keys, so every thesis
  file says `adm: false` beside `adm_predict_xstart: true`. Here the file runs with `adm: true`, said in one notice line.
- `x_loss` off also dropped the out-of-frame rows from the training set: with such a file, x_loss off (from the file or
  the command line) sets `train_in_frame_only` unless it is given explicitly.
- `amp: ''` (or null) meant no mixed precision: `off`.
- The branches `point_image_diffusion` (Dec 2023) and `PointLoss` (Jan 2024) ran the point formulation and are the only
  code that read `factor_multiplier`, `schedule_type`, `warmup_linear` and `head_flag`: a file with one of these keys
  gets `diffusion_target: point`, the latest branch's (PointLoss) formulation, unless it sets `diffusion_target`
  itself. The two branches' files are identical, so a file run with `point_image_diffusion`'s code needs
  `diffusion_target: point_image` (the notice says so).
- `is_subsample_test_set: true` was the original's 10 % test subsample (the option's alias, see engine.options).
- The loss switches `other_loss`, `kl_div_loss` and `x_loss` composed the original's total loss in `train_one_epoch`
  (its `main.py`); such a configuration gets the options that compute that total term by term (`original_objective`):
  `extra_loss` location_original / kl_original, the in/out BCE only without them, the diffusion weight the original
  used (1e5 with the location term, 1 with the KL term or with x_loss off). A notice names each known defect of the
  original kept this way; docs/losses.md has the table.

The old switches `other_loss`, `kl_div_loss` and `location_loss` are read in files of any layout, on the command line
and in stored configurations: outside a DiffusionGaze configuration as this project's own terms (`extra_loss`
location, kl, cross_entropy), which is what they meant in this project's earlier versions.
Files in this project's own layout (flat, or grouped under any other section names) keep every check.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from engine.options import LEGACY_OPTIONS, OPTIONS_BY_NAME, ORIGINAL_EXTRA_LOSSES

ORIGINAL_SECTIONS = ("Dataset", "Diffusion", "experiment_parameter", "losses_parameters", "Gaze")
# Keys that only the point-formulation branches' code read (main's code never did), and the option they select.
POINT_BRANCH_KEYS = ("factor_multiplier", "schedule_type", "warmup_linear", "head_flag")
POINT_FORMULATION = {"diffusion_target": "point"}
POINT_SOURCE = " is read only by DiffusionGaze's point branches)"
LEGACY_LOSS_SWITCHES = tuple(option.name for option in LEGACY_OPTIONS)  # old spellings of extra_loss
# The diffusion weight of the original's total with its extra terms (hard-coded in train_one_epoch).
ORIGINAL_EXTRA_DIFFUSION_WEIGHT = {"location_original": 1e5, "kl_original": 1.0}
DEFECTS = {
    "location_original": "the original's total is 1e5 x diffusion + 1e4 x MSE(location, gaze point) with no in/out "
                         "BCE, reproduced (extra_loss: location_original); known defects kept: the soft-argmax "
                         "location is in grid cells (0 .. size - 1, as row, column) but the gaze point in [0, 1], so "
                         "the term pulls the prediction towards the top-left cell, and the out-of-frame rows (gaze "
                         "point -1) count too. The corrected term is extra_loss: location (docs/losses.md)",
    "kl_original": "the original's total is diffusion + 10 x KLDivLoss(log_softmax(target), softmax(output)) with "
                   "diffusion weight 1 and no in/out BCE, reproduced (extra_loss: kl_original); known defects kept: "
                   "`output` is the network's output mapped by (out + v) / 2v, which for the point formulations "
                   "(whose output is already a [0, 1] heatmap) is the wrong map, and the out-of-frame rows count "
                   "too. The corrected term is extra_loss: kl (docs/losses.md)",
}


def notice(text: str) -> None:
    print(f"notice: {text}", file=sys.stderr)


def _level(where: str) -> int:
    return 1 if where == "command line" else 0  # a flag overrides a file


def extra_loss_of(legacy: dict[str, tuple[Any, str]], original: bool) -> tuple[str, str]:
    """(extra_loss, where) that the old switches {name: (value, where)} select: in a DiffusionGaze configuration
    (`original`) the original's terms, elsewhere this project's own, as its earlier versions computed them."""
    other, other_where = legacy.get("other_loss", (False, ""))
    kl, kl_where = legacy.get("kl_div_loss", (False, ""))
    location, location_where = legacy.get("location_loss", ("softargmax", ""))
    where = other_where or kl_where or location_where
    if not other:
        if kl and original:
            notice(f"{kl_where}: 'kl_div_loss' has no effect without 'other_loss' (as in the original)")
        elif kl or location != "softargmax":
            name, at = ("kl_div_loss", kl_where) if kl else ("location_loss", location_where)
            raise ValueError(f"{at}: '{name}' selects a variant of the extra loss 'other_loss', which is off: "
                             f"set extra_loss ({'kl' if kl else location}) instead of the old switches")
        return "none", where
    if location != "softargmax" and (original or kl):
        raise ValueError(f"{location_where}: 'location_loss: {location}' selects the location term of 'other_loss', "
                         + ("but 'kl_div_loss' selects the KL term" if kl else
                            "which this project added; a DiffusionGaze configuration's other_loss is the original's "
                            "term") + ": set extra_loss instead of the old switches")
    if original:
        return ("kl_original", kl_where) if kl else ("location_original", other_where)
    if kl:
        return "kl", kl_where
    return ("cross_entropy", location_where) if location == "cross_entropy" else ("location", other_where)


def predicts_heatmap(values: dict[str, Any]) -> bool:
    """Whether the network's raw output is a heatmap (x0 prediction, or a point formulation)."""
    if values.get("diffusion_target", "heatmap") != "heatmap":
        return True
    return values["adm_predict_xstart"] if values["adm"] else values["predict_sthg"] == "pred_x0"


def translate_stored_loss_switches(stored: dict[str, Any], checkpoint: str) -> dict[str, Any]:
    """A stored configuration of this project's earlier versions, with its old switches read as `extra_loss` (their
    meaning then: this project's own terms)."""
    legacy = {name: (stored.pop(name), f"{checkpoint} (stored configuration)") for name in LEGACY_LOSS_SWITCHES
              if name in stored}
    if legacy and "extra_loss" not in stored:
        stored["extra_loss"] = extra_loss_of(legacy, original=False)[0]
        if stored["extra_loss"] == "kl":
            notice(f"{checkpoint}: its run used this project's earlier KL term (on the [-v, v] maps); extra_loss kl "
                   "now compares the [0, 1] maps (docs/losses.md)")
    return stored


class DiffusionGazeLayout:
    """The hook engine.config calls for every YAML file (`OptionTable.original_layout`), and for the old spellings
    (`legacy_options`) wherever they are given."""

    sections = ORIGINAL_SECTIONS
    legacy_options = LEGACY_OPTIONS

    def detects(self, top_level_keys: list[Any]) -> bool:
        return any(key in self.sections for key in top_level_keys)

    def raw_value(self, name: str, value: Any) -> Any:
        """A value as the original read it, before the project's type conversion."""
        if name == "amp" and (value is None or value == ""):
            return "off"  # the original: `if config.Dataset.amp:` -- an empty level is no mixed precision
        return value

    def translate(self, path: Path, found: dict[str, tuple[Any, str]], table) -> dict[str, tuple[Any, str]]:
        """{option: (value, where)} of one original-layout file -> the same with the original's meanings."""
        found = dict(found)
        if "adm" in found and found["adm"][0] is False and "adm" in table.by_name:
            where = found["adm"][1]
            found["adm"] = (True, f"{where} (DiffusionGaze file: the original always ran the ADM formulation)")
            notice(f"{where}: 'adm: false' has no effect in a DiffusionGaze file (the original never read it and "
                   "always ran the ADM formulation set by the adm_* keys): running with adm: true")
        markers = [name for name in POINT_BRANCH_KEYS if name in found]
        if markers and not any(name in found for name in POINT_FORMULATION):
            where = found[markers[0]][1]
            missing = [name for name in POINT_FORMULATION if name not in table.by_name]
            if missing:
                raise ValueError(
                    f"{where}: '{markers[0]}' marks a file of DiffusionGaze's point-formulation branches "
                    f"(point_image_diffusion / PointLoss), which diffuse the gaze point; this build has no "
                    f"{', '.join(missing)} option to run that formulation")
            for name, value in POINT_FORMULATION.items():  # said once per configuration, in resolve()
                found[name] = (value, f"{where} ('{markers[0]}'{POINT_SOURCE}")
        return found


    def resolve(self, values: dict[str, Any], sources: dict[str, str], explicit: set[str],
                legacy: dict[str, tuple[Any, str]] | None = None, original: bool = True) -> None:
        """After the command line: the old loss switches `legacy` ({name: (value, where)}) become `extra_loss`, and a
        configuration read from original-layout files (`original`) gets the original's objective
        (`original_objective`)."""
        point = sources.get("diffusion_target", "")
        if original and point.endswith(POINT_SOURCE):
            notice(f"{point}: running the latest point branch's (PointLoss) method, diffusion_target: point (a file "
                   "of the branch point_image_diffusion needs diffusion_target: point_image)")
        extra, where = None, ""
        if legacy:
            extra, where = extra_loss_of(legacy, original)
            given = "extra_loss" in explicit
            level = max(_level(at) for _, at in legacy.values())
            if given and _level(sources["extra_loss"]) > level:
                extra = None  # `--extra_loss` overrides the files' old switches
            elif given and values["extra_loss"] != extra and _level(sources["extra_loss"]) == level:
                raise ValueError(f"{where}: the old switches {', '.join(sorted(legacy))} select extra_loss {extra!r}, "
                                 f"but {sources['extra_loss']} sets extra_loss {values['extra_loss']!r}: give one")
            if extra is not None:
                switched = sorted(name for name, (value, _) in legacy.items() if value not in (False, "softargmax"))
                values["extra_loss"] = extra
                sources["extra_loss"] = f"{where} (old switch{'es' if len(switched) > 1 else ''} " \
                                        f"{', '.join(switched or sorted(legacy))})"
                if not original and extra != "none":
                    notice(f"{where}: the old switches {', '.join(switched)} are read as extra_loss: {extra}")
        if original:
            self.original_objective(values, sources, explicit, where if extra is not None else "")

    def original_objective(self, values: dict[str, Any], sources: dict[str, str], explicit: set[str],
                           where: str = "") -> None:
        """The options that compute the total loss of the original's `train_one_epoch` from its switches:
        x_loss off also drops the out-of-frame rows (unless train_in_frame_only was set explicitly, so `--x_loss`
        brings them back as it did); with the extra terms the total has no in/out BCE and a fixed diffusion weight;
        with neither the diffusion loss alone has weight 1 when x_loss is off. A weight given on the command line
        is kept. `where`: the file and line (or "command line") of the old switch that chose extra_loss."""
        x_loss, x_where = values.get("x_loss"), sources.get("x_loss", "")
        if x_loss is False and "train_in_frame_only" not in explicit and "train_in_frame_only" in values:
            values["train_in_frame_only"] = True
            sources["train_in_frame_only"] = f"{x_where} (DiffusionGaze file: x_loss off drops out-of-frame rows)"
            notice(f"x_loss is off ({x_where}) with a DiffusionGaze file: the out-of-frame rows are dropped "
                   "from the training set, as the original did (train_in_frame_only: true)")
        extra = values.get("extra_loss", "none")
        if "extra_loss" not in values:
            return
        extra_where = where or sources["extra_loss"]
        if extra in ORIGINAL_EXTRA_LOSSES:
            key = ("kl_div_loss" if extra == "kl_original" else "other_loss") if where else "extra_loss"
            notice(f"{extra_where}: '{key}' in a DiffusionGaze configuration: {DEFECTS[extra]}")
            if not predicts_heatmap(values):
                notice(f"{extra_where}: the original applied {extra} to the network's raw output, which with this "
                       "configuration is the noise (or v) prediction, not a heatmap (reproduced)")
            if x_loss:
                values["x_loss"] = False
                sources["x_loss"] = (f"{extra_where} (DiffusionGaze: with its extra term the original's total has no "
                                     "in/out BCE; x_loss only kept the out-of-frame rows)")
        inout_default = OPTIONS_BY_NAME["inout_weight"].default
        if values.get("x_loss") is False and values.get("inout_weight", inout_default) != inout_default and \
                sources["inout_weight"] != "command line":
            notice(f"{sources['inout_weight']}: inout_weight {values['inout_weight']:g} is not read by the original "
                   "here (its total has no in/out BCE with x_loss off or with its extra term): left at its default")
            values["inout_weight"], sources["inout_weight"] = inout_default, "default"
        weight = ORIGINAL_EXTRA_DIFFUSION_WEIGHT.get(extra, 1.0 if x_loss is False else None)
        if weight is not None and values["diffusion_weight"] != weight and \
                sources["diffusion_weight"] != "command line":
            why = (f"the original's total with {extra}" if extra != "none" else
                   "x_loss off, the original's total is the diffusion loss alone")
            at = extra_where if extra != "none" else x_where
            if sources["diffusion_weight"] != "default":
                notice(f"{sources['diffusion_weight']}: diffusion_weight {values['diffusion_weight']:g} is not read "
                       f"by the original here ({why}): weight {weight:g}")
            values["diffusion_weight"], sources["diffusion_weight"] = weight, f"{at} (DiffusionGaze: {why})"
        if values.get("out_of_frame_diffusion_loss") and not values.get("train_in_frame_only"):
            notice(f"{sources['out_of_frame_diffusion_loss']}: the July 2023 code summed the diffusion loss of every "
                   "row (out-of-frame rows against an empty heatmap) and divided it by the in-frame count, a known "
                   "defect, reproduced (out_of_frame_diffusion_loss: true)")


DIFFUSIONGAZE_LAYOUT = DiffusionGazeLayout()
