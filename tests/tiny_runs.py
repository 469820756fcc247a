"""Helpers for the training-infrastructure tests: a tiny synthetic dataset and in-process runs of the main job."""
from __future__ import annotations

from pathlib import Path

from datasets.synthetic import generate_gazefollow
from engine.config import parse_command_line
from tests.test_end_to_end import TINY


def make_tiny_dataset(root: Path, n_train_images: int = 4, n_test_images: int = 2) -> Path:
    generate_gazefollow(root, n_train_images=n_train_images, n_test_images=n_test_images, seed=5)
    return root


def tiny_config(dataset: Path, output_dir: Path, tag: str, *flags: str):
    """The end-to-end test's tiny model, parsed exactly as main.py parses its command line."""
    argv = [*TINY, "--source_dataset_dir", str(dataset), "--output_dir", str(output_dir), "--tag", tag, *flags]
    config, _ = parse_command_line(argv)
    return config
