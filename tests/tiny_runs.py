"""Helpers for the training-infrastructure tests: a tiny synthetic dataset and in-process runs of the main job."""
from __future__ import annotations

import errno
import io
from pathlib import Path

from datasets.synthetic import generate_gazefollow
from engine.config import parse_command_line
from tests.test_end_to_end import TINY


def make_tiny_dataset(root: Path, n_train_images: int = 4, n_test_images: int = 2) -> Path:
    generate_gazefollow(root, n_train_images=n_train_images, n_test_images=n_test_images, seed=5)
    return root


def fill_disk_after(monkeypatch, limit: int) -> None:
    """Checkpoint writes (engine.checkpoint) fail with ENOSPC after `limit` bytes, as a full disk reports it to
    torch.save."""
    import engine.checkpoint

    real_fdopen = engine.checkpoint.os.fdopen

    class FullDisk(io.RawIOBase):
        def __init__(self, stream):
            self.stream, self.written = stream, 0

        def writable(self):
            return True

        def write(self, data):
            self.written += len(data)
            if self.written > limit:
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.stream.write(data)

        def fileno(self):
            return self.stream.fileno()

        def close(self):
            self.stream.close()

    monkeypatch.setattr(engine.checkpoint.os, "fdopen", lambda handle, mode: FullDisk(real_fdopen(handle, mode)))


def tiny_config(dataset: Path, output_dir: Path, tag: str, *flags: str):
    """The end-to-end test's tiny model, parsed exactly as main.py parses its command line."""
    argv = [*TINY, "--source_dataset_dir", str(dataset), "--output_dir", str(output_dir), "--tag", tag, *flags]
    config, _ = parse_command_line(argv)
    return config


# This project's state-dict names -> the original DiffusionGaze's, written independently of pretrained.renaming (the
# tests build original-layout files with it and check that the project's converter maps them back).
TO_DIFFUSIONGAZE = [
    (r"gaze_backbone\.scene_positional_encoding\.", "gaze_model.postional_embedding_1.penc."),
    (r"gaze_backbone\.face_positional_encoding\.", "gaze_model.postional_embedding_2.penc."),
    (r"gaze_backbone\.", "gaze_model."),
    (r"unet\.", "model."),
    (r"inout_head\.conv1\.", "sequential.0."),
    (r"inout_head\.bn1\.", "sequential.1."),
    (r"inout_head\.conv2\.", "sequential.3."),
    (r"inout_head\.bn2\.", "sequential.4."),
    (r"inout_head\.fc\.", "fc_inout."),
]
