"""Datasets by name: `build_dataset(config, split)` builds the one named by the `source_dataset` option, and
`build_eval_dataset(config)` the test split that is evaluated (`eval_dataset`, by default the same)."""
from __future__ import annotations

import numpy as np
from torch.utils.data import Dataset

from datasets.errors import DataError
from datasets.gazefollow import GazeFollow
from datasets.goo import GOO
from datasets.validation import no_in_frame_target
from datasets.videoattentiontarget import VideoAttentionTarget

# each class provides from_config(config, split) and the `protocol` it is evaluated with
DATASETS = {"gazefollow": GazeFollow, "videoattentiontarget": VideoAttentionTarget, "goo": GOO}


def build_dataset(config, split: str):
    """The `split` ("train" or "test") of the dataset named by config.source_dataset."""
    name = config.source_dataset
    if name not in DATASETS:
        raise ValueError(f"unknown source_dataset {name!r}; available: {', '.join(sorted(DATASETS))}")
    dataset = DATASETS[name].from_config(config, split)
    if split == "train" and getattr(config, "train_augmentations", None) is not None:
        dataset.set_augmentations(config.train_augmentations)
    if split == "train" and getattr(config, "train_in_frame_only", False):
        dataset = InFrameOnly(dataset)
    return dataset


class InFrameOnly(Dataset):
    """The in-frame samples of a dataset (train_in_frame_only: the original's training set when x_loss was off).
    Position i is the i-th in-frame sample; items keep the underlying dataset's `index`, so per-sample draws are those
    of the full set. Everything else (set_epoch, protocol, inout_labels, ...) is the wrapped dataset's."""

    def __init__(self, dataset):
        self.dataset = dataset
        self.indices = np.flatnonzero(dataset.inout_labels() == 1)
        if not len(self.indices):  # the data check's message (datasets.validation), with the option that asked
            raise DataError(no_in_frame_target([str(name) for name in dataset._annotation_names], len(dataset))
                            + "; train_in_frame_only would train on none")

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        epoch, position = key if isinstance(key, tuple) else (None, key)
        index = int(self.indices[position])
        return self.dataset[(epoch, index) if epoch is not None else index]

    def inout_labels(self) -> np.ndarray:
        return self.dataset.inout_labels()[self.indices]

    def __getattr__(self, name: str):
        if name == "dataset":  # before __init__ (copy/pickle probes)
            raise AttributeError(name)
        return getattr(self.dataset, name)


def eval_config(config):
    """The configuration that builds the evaluated test split: `eval_dataset` and `eval_dataset_dir` replace
    source_dataset and source_dataset_dir when set (cross-dataset evaluation), otherwise the config itself.
    engine.config.validate refuses an eval_dataset other than source_dataset without its eval_dataset_dir."""
    name = getattr(config, "eval_dataset", None)
    folder = getattr(config, "eval_dataset_dir", None)
    if name is None and folder is None:
        return config
    return config.replace(source_dataset=name or config.source_dataset,
                          source_dataset_dir=folder or config.source_dataset_dir)


def build_eval_dataset(config):
    """The test split that evaluation scores (see eval_config)."""
    return build_dataset(eval_config(config), "test")
