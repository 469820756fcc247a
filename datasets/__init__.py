"""Datasets by name: `build_dataset(config, split)` builds the one named by the `source_dataset` option."""
from __future__ import annotations

from datasets.gazefollow import GazeFollow

DATASETS = {"gazefollow": GazeFollow}  # each class provides from_config(config, split)
_ARRIVING_LATER = {"videoattentiontarget": "issue 4", "goo": "issue 4"}


def build_dataset(config, split: str):
    """The `split` ("train" or "test") of the dataset named by config.source_dataset."""
    name = config.source_dataset
    if name in _ARRIVING_LATER:
        raise NotImplementedError(
            f"source_dataset {name!r} is not implemented yet (arrives with {_ARRIVING_LATER[name]}); "
            f"available: {', '.join(sorted(DATASETS))}"
        )
    if name not in DATASETS:
        raise ValueError(f"unknown source_dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    return DATASETS[name].from_config(config, split)
