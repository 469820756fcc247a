"""The configured data sets of the Gaze360 / RT-GENE trainer, shared by training (gaze360.train) and the analyses
(gaze360.analyses), which both import it (one direction only)."""
from __future__ import annotations

from engine.data import make_loader
from gaze360.data import ViewSpec, collate_skipping, gaze360_dataset
from gaze360.options import crop_list
from gaze360.rtgene import fold_subjects, rtgene_dataset

TARGET_KEYS = {"yawpitch": "yaw_pitch", "sincos": "sincos", "sincos45": "sincos45"}  # model target -> batch key


def make_dataset(config, split: str, train: bool, fold: int | None = None, magnification_delta: int = 0):
    """The configured data set's `split`; train=True applies the training augmentations."""
    kwargs = dict(train=train, spec=ViewSpec.from_config(config, crop_list(config), magnification_delta),
                  missing_frames=config.missing_frames, seed=config.seed)
    if config.dataset == "rtgene":
        return rtgene_dataset(config.dataset_dir, fold_subjects(fold)[split], config.rtgene_face, **kwargs)
    return gaze360_dataset(config.dataset_dir, split, num_frames=config.num_frames, window=config.window, **kwargs)


def make_gaze_loader(dataset, config, train: bool, sampler=None):
    """engine.data.make_loader with the collate function that drops unreadable samples (missing_frames: skip)."""
    loader = make_loader(dataset, config, train=train, sampler=sampler)
    loader.collate_fn = collate_skipping
    return loader
