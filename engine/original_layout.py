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

Files in this project's own layout (flat, or grouped under any other section names) keep every check.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

ORIGINAL_SECTIONS = ("Dataset", "Diffusion", "experiment_parameter", "losses_parameters", "Gaze")
# Keys that only the point-formulation branches' code read (main's code never did), and the option they select.
POINT_BRANCH_KEYS = ("factor_multiplier", "schedule_type", "warmup_linear", "head_flag")
POINT_FORMULATION = {"diffusion_target": "point"}
POINT_SOURCE = " is read only by DiffusionGaze's point branches)"


def notice(text: str) -> None:
    print(f"notice: {text}", file=sys.stderr)


class DiffusionGazeLayout:
    """The hook engine.config calls for every YAML file (`OptionTable.original_layout`)."""

    sections = ORIGINAL_SECTIONS

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


    def resolve(self, values: dict[str, Any], sources: dict[str, str], explicit: set[str]) -> None:
        """After the command line, for a configuration read from original-layout files: x_loss off also drops the
        out-of-frame training rows (unless train_in_frame_only was set explicitly), so `--x_loss` on the command line
        brings them back as it did in the original."""
        point = sources.get("diffusion_target", "")
        if point.endswith(POINT_SOURCE):
            notice(f"{point}: running the latest point branch's (PointLoss) method, diffusion_target: point (a file "
                   "of the branch point_image_diffusion needs diffusion_target: point_image)")
        if values.get("x_loss") is False and "train_in_frame_only" not in explicit and "train_in_frame_only" in values:
            values["train_in_frame_only"] = True
            sources["train_in_frame_only"] = f"{sources['x_loss']} (DiffusionGaze file: x_loss off drops out-of-frame rows)"
            notice(f"x_loss is off ({sources['x_loss']}) with a DiffusionGaze file: the out-of-frame rows are dropped "
                   "from the training set, as the original did (train_in_frame_only: true)")


DIFFUSIONGAZE_LAYOUT = DiffusionGazeLayout()
