"""The bad-input catalogue, files side (issue 23): what a downloaded, exported or hand-made file can make the framework
do. Three classes, several inputs each, every case asserting the exit status, the first line of the message and what
is on disk afterwards:

- holes: nothing in a file runs code unless the user trusts it by name (GOO pickles through a restricted unpickler,
  weight files that need full unpickling refused on every path without --trust_legacy_checkpoint, plug-ins named by
  a checkpoint announced before they are imported);
- silent results: each input does what the user asked or stops and says why (a training split without an in-frame
  target, EXIF / video display orientation, 16-bit images, `pretrained.export --weights`);
- raw crashes turned into one line (byte-order marks and other encodings, decompression-bomb headers, a damaged
  validation cache, tiny images in predict, an unreachable wandb server, the feature cache with BatchNorm buffers).

The data side of the older catalogue is tests/test_bad_inputs.py, the engine side tests/test_bad_inputs_engine.py;
the trust model these tests hold the code to is docs/trust.md.
"""
import codecs
import csv
import json
import os
import pickle
import re
import shutil
import socket
import struct
import subprocess
import sys
import threading
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

import main as main_module
import predict as predict_module
from datasets.errors import DataError
from datasets.gazefollow import GazeFollow
from datasets.goo import read_records
from datasets.image_files import decode, read_image_file
from datasets.synthetic import generate_gazefollow
from datasets.validation import CACHE_FOLDER, REPORT_FILE, validate_datasets
from datasets.videoattentiontarget import VideoAttentionTarget
from engine.checkpoint import load_checkpoint, save_checkpoint
from gaze360.data import read_split_file
from inference.sources import read_head_box_file, video_frames
from tests.test_bad_inputs import _threads, TEST, TRAIN, rows, sources, write_rows  # noqa: F401  (fixtures)
from tests.test_end_to_end import TINY

PREFIXES = ("data error:", "configuration error:", "error:", "predict.py: error:", "python -m pretrained.export: error:")


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict[str, Path]:
    """A finished 1-epoch tiny run trained with ema_on (its EMA differs from its weights)."""
    root = tmp_path_factory.mktemp("bad_files_run")
    generate_gazefollow(root / "data", n_train_images=4, n_test_images=1, seed=5)
    argv = [*TINY, "--source_dataset_dir", str(root / "data"), "--output_dir", str(root / "runs"), "--tag", "ema",
            "--epochs", "1", "--batch_size", "2", "--ema_on", "--ema_rate", "0.5"]
    assert main_module.main(argv) == 0
    return {"root": root, "data": root / "data", "checkpoint": root / "runs" / "ema" / "last.pt"}


def message_line(stderr: str) -> str:
    """The first error line a program printed (progress bars share stderr), or '' when there is none."""
    lines = [line.strip() for chunk in stderr.splitlines() for line in chunk.split("\r")]
    return next((line for line in lines if line.startswith(PREFIXES)), "")


def run_main(argv, capsys, entry=main_module.main) -> tuple[int, str, str]:
    """(exit status, first error line, all of stderr followed by stdout) of an in-process run of an entry point."""
    status = entry([str(arg) for arg in argv])
    captured = capsys.readouterr()
    return status, message_line(captured.err), captured.err + "\n" + captured.out


def run_predict(argv, capsys) -> tuple[int, str, str]:
    return run_main(argv, capsys, predict_module.main)


def main_argv(data: Path, out: Path, dataset: str = "gazefollow", *flags) -> list:
    return [*TINY, "--epochs", "1", "--source_dataset", dataset, "--source_dataset_dir", data, "--output_dir", out,
            "--tag", "run", *flags]


def first_train_image(data: Path) -> Path:
    return data / rows(data / TRAIN)[0][0]


def predictions(out: Path) -> list[dict]:
    with open(out / "predictions.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def png_bytes(pixels: np.ndarray, bit_depth: int = 16) -> bytes:
    """A PNG written by hand (Pillow cannot write 16-bit colour): pixels [H, W, C] with C = 1 grey, 2 grey+alpha,
    3 RGB, 4 RGBA, stored big-endian at `bit_depth` bits per sample."""
    height, width, channels = pixels.shape
    colour_type = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
    dtype = ">u2" if bit_depth == 16 else "u1"
    raw = b"".join(b"\x00" + pixels[y].astype(dtype).tobytes() for y in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def bomb_png(width: int = 100_000, height: int = 100_000) -> bytes:
    """A complete, tiny PNG whose header declares width x height RGB pixels (10^10 by default)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b""))


def bomb_jpeg(width: int = 65_000, height: int = 65_000) -> bytes:
    """A JPEG whose frame header (SOF0) declares width x height pixels, with an end marker: complete to the checks."""
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + sof + b"\xff\xda\x00\x08\x01\x01\x00\x00\x3f\x00" + b"\x00" * 16 + b"\xff\xd9"


# === holes: nothing in a file runs unless the user trusts it by name ================================================


class _Payload:
    """Pickles as a call of `function(*arguments)`: what a doctored pickle does when it is loaded."""

    def __init__(self, function, *arguments):
        self.function, self.arguments = function, arguments

    def __reduce__(self):
        return self.function, self.arguments


def payloads(marker: Path) -> dict:
    """Doctored objects, each of which would create `marker` when unpickled."""
    return {
        "os.system": (_Payload(os.system, f"touch {marker}"), f"{os.system.__module__}.system"),
        "subprocess": (_Payload(subprocess.check_call, ["touch", str(marker)]), "subprocess.check_call"),
        "eval": (_Payload(eval, f"open({str(marker)!r}, 'w').close()"), "builtins.eval"),
        "exec": (_Payload(exec, f"open({str(marker)!r}, 'w').close()"), "builtins.exec"),
    }


@pytest.mark.parametrize("payload, place", [("os.system", "inside a record"), ("subprocess", "the whole file"),
                                            ("eval", "inside a record"), ("exec", "a numpy object array")])
def test_a_doctored_goo_pickle_is_refused_and_runs_nothing(payload, place, sources, tmp_path, capsys):
    data = shutil.copytree(sources["goo"], tmp_path / "data")
    pickle_path = data / "oneshotrealhumansNew.pickle"
    records = pickle.loads(pickle_path.read_bytes())
    marker = tmp_path / "the_payload_ran"
    evil, name = payloads(marker)[payload]
    if place == "inside a record":
        records[1]["seg"] = [[1, 2], evil]
    elif place == "a numpy object array":
        records[0]["ann"]["bboxes"] = np.array([records[0]["ann"]["bboxes"][0], evil], dtype=object)
    else:
        records = evil
    pickle_path.write_bytes(pickle.dumps(records))
    status, message, _ = run_main(main_argv(data, tmp_path / "out", "goo"), capsys)
    assert status == 2
    assert message.startswith(f"data error: {pickle_path}: refused to unpickle it: it names the Python object "
                              f"{name}, which such files do not contain"), message
    assert not marker.exists()  # the payload did not run
    assert not (tmp_path / "out" / "run" / "last.pt").exists()


@pytest.mark.parametrize("protocol", range(pickle.HIGHEST_PROTOCOL + 1))
def test_goo_pickles_of_every_protocol_read_as_pickle_reads_them(protocol, sources, tmp_path):
    """What the release files hold (datasets.md: dicts of strings, numbers, lists and numpy arrays and scalars; GOO's
    own loader np.copy-es its fields) is admitted in every pickle protocol, numpy 1 and 2 module names included."""
    records = pickle.loads((sources["goo"] / "oneshotrealhumansNew.pickle").read_bytes())
    records[0].update(hx=np.float64(records[0]["hx"]), gazeIdx=np.int64(0), occluded=np.bool_(False),
                      ann={"bboxes": np.array(records[0]["ann"]["bboxes"]), "labels": np.array([0, -1])},
                      seg=np.arange(6, dtype=np.int32).reshape(3, 2), extra={"set": {1, 2}, "bytes": b"\x00\xff"})
    path = tmp_path / "records.pickle"
    path.write_bytes(pickle.dumps(records, protocol=protocol))
    read = read_records(path)
    assert repr(read) == repr(pickle.loads(path.read_bytes()))
    assert read[0]["ann"]["bboxes"].dtype == np.float64 and type(read[0]["hx"]) is np.float64


def _with_plugin(trained, tmp_path: Path, name: str) -> tuple[Path, Path]:
    """A copy of the trained checkpoint whose stored configuration names a plug-in file that announces itself."""
    plugin = tmp_path / f"{name}.py"
    plugin.write_text("import sys\nprint('PLUGIN CODE RAN', file=sys.stderr)\n")
    checkpoint = load_checkpoint(trained["checkpoint"])
    checkpoint["config"] = dict(checkpoint["config"], backbone_plugins=[str(plugin)])
    save_checkpoint(tmp_path / f"{name}.pt", checkpoint)
    return plugin, tmp_path / f"{name}.pt"


def test_plugins_named_in_a_checkpoint_are_announced_before_they_run(trained, tmp_path, capsys):
    image = tmp_path / "scene.png"
    Image.new("RGB", (64, 48), (90, 120, 60)).save(image)
    plugin, weights = _with_plugin(trained, tmp_path, "predict_plugin")
    status, message, err = run_predict(["--weights", weights, "--image", image, "--head_box", "20,5,36,20", "--out",
                                        tmp_path / "predicted"], capsys)
    assert (status, message) == (0, "")
    notice = next(line for line in err.splitlines() if line.startswith("importing the backbone plug-in"))
    assert notice.startswith(f"importing the backbone plug-in(s) ['{plugin}'] named in the checkpoint {weights} "
                             "(backbone_plugins): their code runs now")
    assert err.index(notice) < err.index("PLUGIN CODE RAN")
    assert len(predictions(tmp_path / "predicted")) == 1

    plugin, weights = _with_plugin(trained, tmp_path, "eval_plugin")
    argv = ["--device", "cpu", "--no_wandb", "--num_workers", "0", "--source_dataset_dir", trained["data"],
            "--output_dir", tmp_path / "runs", "--tag", "evaluated", "--eval_weights", weights]
    status, message, err = run_main(argv, capsys)
    assert (status, message) == (0, "")
    notice = next(line for line in err.splitlines() if line.startswith("importing the backbone plug-in"))
    assert f"['{plugin}'] named in the checkpoint {weights}" in notice
    assert err.index(notice) < err.index("PLUGIN CODE RAN")
    assert (tmp_path / "runs" / "evaluated" / "metrics.json").is_file()

    # A plug-in the checkpoint names that is gone: one line naming it and what to do (was a traceback).
    checkpoint = load_checkpoint(weights)
    checkpoint["config"]["backbone_plugins"] = [str(tmp_path / "gone.py")]
    save_checkpoint(tmp_path / "gone.pt", checkpoint)
    status, message, _ = run_main(argv[:-1] + [tmp_path / "gone.pt", "--tag", "gone"], capsys)
    assert status == 2
    assert message.startswith(f"error: backbone plug-in '{tmp_path / 'gone.py'}' (backbone_plugins) not found")
    assert not (tmp_path / "runs" / "gone" / "metrics.json").exists()


def _legacy(trained, tmp_path: Path) -> Path:
    """The trained checkpoint with a pickled function beside its tensors, as the original DiffusionGaze saves."""
    checkpoint = load_checkpoint(trained["checkpoint"])
    checkpoint["loss_fn"] = F.mse_loss
    torch.save(checkpoint, tmp_path / "legacy.pt")
    return tmp_path / "legacy.pt"


REFUSED = r"{prefix}{file}: refused: torch\.load\(weights_only=True\) cannot load it because it holds Python objects"


@pytest.mark.parametrize("path", ["predict", "export_safetensors", "export_onnx"])
def test_full_unpickling_needs_the_trust_flag_on_every_path(path, trained, tmp_path, capsys):
    legacy = _legacy(trained, tmp_path)
    image = tmp_path / "scene.png"
    Image.new("RGB", (64, 48), (90, 120, 60)).save(image)
    if path == "predict":
        output, prefix, entry = tmp_path / "predicted", "predict.py: error: ", predict_module.main
        argv = ["--weights", legacy, "--image", image, "--head_box", "20,5,36,20", "--out", output]
    else:
        from pretrained.export import main as entry

        output = tmp_path / ("w.safetensors" if path == "export_safetensors" else "w.onnx")
        prefix, argv = "python -m pretrained.export: error: ", [legacy, output]
    status, message, _ = run_main(argv, capsys, entry)
    assert status == 2
    assert re.match(REFUSED.format(prefix=re.escape(prefix), file=re.escape(str(legacy))), message), message
    assert "--trust_legacy_checkpoint" in message
    written = [output] if path != "export_onnx" else [tmp_path / "w.encoder.onnx", tmp_path / "w.denoise.onnx"]
    assert not any(p.exists() for p in written)
    status, message, output_text = run_main(argv + ["--trust_legacy_checkpoint"], capsys, entry)
    assert (status, message) == (0, ""), output_text[-2000:]
    assert f"{legacy}: loading with full unpickling (trust_legacy_checkpoint)" in output_text
    assert all(p.exists() for p in (written if path != "predict" else [output / "predictions.csv"]))


def test_torch_hub_entry_points_honour_the_trust_option(trained, tmp_path):
    import hubconf
    from pretrained.files import CheckpointError

    legacy = _legacy(trained, tmp_path)
    with pytest.raises(CheckpointError, match="--trust_legacy_checkpoint"):
        hubconf.predictor(str(legacy), device="cpu")
    assert hubconf.predictor(str(legacy), device="cpu", trust_legacy_checkpoint=True).evaluated_weights == "ema"


def test_a_pickled_detector_file_is_announced_before_it_is_loaded(tmp_path, monkeypatch, capsys):
    """Ultralytics unpickles .pt detector files fully: the user named the file, and is told what that means first."""
    import importlib.machinery
    import types

    from inference.detection import YoloHeadDetector

    loaded = []
    fake = types.ModuleType("ultralytics")
    fake.__spec__ = importlib.machinery.ModuleSpec("ultralytics", None)
    fake.YOLO = lambda path: loaded.append((path, capsys.readouterr().err)) or object()
    monkeypatch.setitem(sys.modules, "ultralytics", fake)
    for name in ("heads.pt", "heads.onnx"):
        (tmp_path / name).write_bytes(b"weights")
        YoloHeadDetector(tmp_path / name)
    (_, before_pt), (_, before_onnx) = loaded
    assert before_pt.startswith(f"--detector yolo:{tmp_path / 'heads.pt'}: Ultralytics loads .pt detector files by "
                                "full unpickling, which runs any code the file holds")
    assert before_onnx == ""  # an exported detector needs no unpickling: nothing to warn about


def test_timm_backbone_weights_honour_the_trust_flag(tmp_path):
    from models.timm_backbone import TimmEncoder

    pytest.importorskip("timm")
    source = TimmEncoder("resnet18", 32)
    torch.save({"state_dict": source.model.state_dict(), "loss_fn": F.mse_loss}, tmp_path / "encoder.pth")
    with pytest.raises(ValueError, match=rf"{re.escape(str(tmp_path / 'encoder.pth'))}: refused: .*"
                                         r"--trust_legacy_checkpoint"):
        TimmEncoder("resnet18", 32, weights=str(tmp_path / "encoder.pth"))
    loaded = TimmEncoder("resnet18", 32, weights=str(tmp_path / "encoder.pth"), trust_legacy=True)
    assert torch.equal(loaded.model.conv1.weight, source.model.conv1.weight)


# === silent results: each input does what was asked, or stops and says why ===========================================


def _all_out_of_frame_gazefollow(data: Path) -> None:
    table = rows(data / TRAIN)
    for row in table:
        row[14] = "0" if row[14] != "-1" else "-1"
    write_rows(data / TRAIN, table)


def _all_out_of_frame_vat(data: Path, split: str) -> None:
    for person_file in (data / "annotations" / split).glob("*/*/*.txt"):
        table = rows(person_file)
        for row in table:
            row[5] = row[6] = "-1"
        write_rows(person_file, table)


@pytest.mark.parametrize("case", ["gazefollow", "videoattentiontarget", "train_in_frame_only"])
def test_a_training_split_without_an_in_frame_target_stops(case, sources, tmp_path, capsys):
    source = "vat" if case == "videoattentiontarget" else "gazefollow"
    data = shutil.copytree(sources[source], tmp_path / "data")
    if case == "videoattentiontarget":
        _all_out_of_frame_vat(data, "train")
        where = re.escape(str(data / "annotations" / "train")) + r"[^:]*"  # its file, or their folder and count
    else:
        _all_out_of_frame_gazefollow(data)
        where = re.escape(str(data / TRAIN))
    flags = ["--train_in_frame_only"] if case == "train_in_frame_only" else []
    status, message, _ = run_main(main_argv(data, tmp_path / "out", case.replace("train_in_frame_only", "gazefollow"),
                                            *flags), capsys)
    assert status == 2
    assert re.match(rf"data error: ({where}): none of the \d+ training samples has its gaze target in the frame "
                    r"\(inout 1\): the heatmap decoder would learn nothing", message), message
    assert not (tmp_path / "out" / "run" / "last.pt").exists()


def test_a_test_split_without_an_in_frame_target_is_said_and_scored_as_undefined(sources, tmp_path, capsys):
    data = shutil.copytree(sources["vat"], tmp_path / "data")
    _all_out_of_frame_vat(data, "test")
    status, message, err = run_main(main_argv(data, tmp_path / "out", "videoattentiontarget"), capsys)
    assert (status, message) == (0, "")
    assert re.search(r"note: .*annotations/test.*: none of the \d+ test samples has its gaze target in the frame: every "
                     r"metric of the protocol .* is undefined and reported as n/a", err), err[-2000:]
    metrics = json.loads((tmp_path / "out" / "run" / "metrics.json").read_text())
    assert metrics["auc"] is None and metrics["inout_ap"] is None


def _predict_rows(capsys, trained, image: Path, box: str, out: Path, *extra) -> list[dict]:
    status, message, err = run_predict(["--weights", trained["checkpoint"], "--image", image, "--head_box", box,
                                        "--out", out, *extra], capsys)
    assert (status, message) == (0, ""), err[-2000:]
    return predictions(out)


def _without_names(table: list[dict]) -> list[dict]:
    return [{k: v for k, v in row.items() if k not in ("image", "overlay", "frame")} for row in table]


def _scene(size=(80, 56)) -> np.ndarray:
    pixels = np.random.default_rng(4).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    pixels[8:24, 30:46] = (230, 190, 160)  # a "head"
    return pixels


# EXIF orientation -> the transpose that makes a stored image upright, and its inverse (how the camera stored it).
ORIENTATIONS = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_270, 8: Image.Transpose.ROTATE_90}
INVERSE = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}


@pytest.mark.parametrize("orientation", sorted(ORIENTATIONS))
def test_predict_turns_a_photo_upright_by_its_exif_orientation(orientation, trained, tmp_path, capsys):
    upright = Image.fromarray(_scene())
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = orientation
    upright.transpose(INVERSE[orientation]).save(tmp_path / "phone.png", exif=exif.tobytes())  # stored sideways
    assert Image.open(tmp_path / "phone.png").size != upright.size or orientation == 3
    box = "30,8,46,24"  # pixels of the upright image, as the user sees it
    reference = _predict_rows(capsys, trained, tmp_path / "upright.png", box, tmp_path / "a")
    rotated = _predict_rows(capsys, trained, tmp_path / "phone.png", box, tmp_path / "b")
    assert (rotated[0]["image_width"], rotated[0]["image_height"]) == (str(upright.width), str(upright.height))
    assert _without_names(rotated) == _without_names(reference)  # the very same pixels reached the model


def test_dataset_images_keep_their_stored_orientation_with_a_note(sources, tmp_path, capsys):
    """The benchmarks' reference loaders (Chong et al., Gaze-LLE, DiffusionGaze: Image.open(...).convert("RGB")) read
    the stored pixels, and the annotations are given in them: an EXIF orientation is not applied in training or
    evaluation, but the data check says how many images carry one (legitimate, and a hint the images may not be the
    ones the annotations were made on)."""
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    image = first_train_image(data)
    stored = Image.open(image).convert("RGB")
    stored.save(image, "PNG")  # lossless, so the two readings can be compared exactly
    dataset = GazeFollow(data, "train", input_size=32, output_size=16, augment=False)
    index = dataset._paths.tolist().index(str(image.relative_to(data)))
    reference = dataset[index]
    exif = Image.Exif()
    exif[0x0112] = 6
    stored.save(image, "PNG", exif=exif.tobytes())
    tagged = GazeFollow(data, "train", input_size=32, output_size=16, augment=False)[index]
    for key in ("image", "face", "head_mask", "head_box", "gaze_points"):
        assert torch.equal(tagged[key], reference[key]), key
    status, message, err = run_main(main_argv(data, tmp_path / "out"), capsys)
    assert (status, message) == (0, "")
    assert (f"note: 1 image(s) carry an EXIF orientation other than 'as stored', e.g. {image}; they are read as "
            "stored (unrotated)") in err


@pytest.mark.parametrize("kind", ["grey16_png", "rgb16_png", "rgba16_png", "grey_alpha16_png", "grey16_tiff"])
def test_predict_reads_a_16_bit_image_as_its_8_bit_values(kind, trained, tmp_path, capsys):
    """v * 257 in 16 bits is v in 8 bits (high byte): the prediction equals that of the 8-bit image."""
    pixels = _scene()
    grey = kind.startswith("grey")
    eight = pixels[..., :1] if grey else pixels
    Image.fromarray(eight[..., 0] if grey else eight).save(tmp_path / "eight.png")
    sixteen = eight.astype(np.uint16) * 257
    if kind == "grey16_tiff":
        Image.fromarray(sixteen[..., 0]).save(tmp_path / "sixteen.tiff")
        name = "sixteen.tiff"
    else:
        extra = {"rgba16_png": 1, "grey_alpha16_png": 1}.get(kind, 0)
        sixteen = np.concatenate([sixteen, np.full(sixteen.shape[:2] + (extra,), 65535, np.uint16)], axis=2)
        (tmp_path / "sixteen.png").write_bytes(png_bytes(sixteen))
        name = "sixteen.png"
    reference = _predict_rows(capsys, trained, tmp_path / "eight.png", "30,8,46,24", tmp_path / "a")
    read = _predict_rows(capsys, trained, tmp_path / name, "30,8,46,24", tmp_path / "b")
    assert _without_names(read) == _without_names(reference)


@pytest.mark.parametrize("mode", ["F", "I"])
def test_predict_refuses_images_without_a_value_range(mode, trained, tmp_path, capsys):
    values = _scene()[..., 0].astype(np.float32 if mode == "F" else np.int32) * 1000
    Image.fromarray(values).save(tmp_path / "values.tiff")
    status, message, _ = run_predict(["--weights", trained["checkpoint"], "--image", tmp_path / "values.tiff",
                                      "--head_box", "30,8,46,24", "--out", tmp_path / "out"], capsys)
    kind = "floating-point" if mode == "F" else "32-bit integer"
    assert (status, message) == (2, f"predict.py: error: {tmp_path / 'values.tiff'}: image is a {kind} image (PIL "
                                    f"mode {mode}), whose value range no file states, so it cannot be read as 8-bit "
                                    "RGB; save it with 8 or 16 bits per channel")
    assert not (tmp_path / "out" / "predictions.csv").exists()


@pytest.mark.parametrize("rotation", [-90, 90, 180])
def test_video_frames_are_turned_by_the_display_matrix(rotation, tmp_path):
    """A phone's portrait video is stored landscape with a display matrix saying how to turn it: the frames come back
    as shown (ffmpeg's autorotation): a mark in the stored top-left corner ends where the rotation takes it."""
    import av

    path = tmp_path / "phone.mp4"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 32, "yuv420p"
        stream.set_display_rotation(rotation)
        for _ in range(2):
            pixels = np.zeros((32, 64, 3), np.uint8)
            pixels[:8, :8] = 255
            for packet in stream.encode(av.VideoFrame.from_ndarray(pixels, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    frames = list(video_frames(path))
    assert len(frames) == 2
    shown = np.asarray(frames[0][1]).mean(axis=2)
    # counter-clockwise by `rotation`: -90 (clockwise) takes the top-left corner to the top-right, 90 to the
    # bottom-left, 180 to the bottom-right
    size, corner = {-90: ((32, 64), (slice(0, 8), slice(-8, None))), 90: ((32, 64), (slice(-8, None), slice(0, 8))),
                    180: ((64, 32), (slice(-8, None), slice(-8, None)))}[rotation]
    assert frames[0][1].size == size
    assert shown[corner].mean() > 200 and shown.mean() < 60


def test_export_writes_the_weights_it_is_asked_for(trained, tmp_path, capsys):
    from safetensors.torch import load_file

    from pretrained.export import main as export_main

    checkpoint = load_checkpoint(trained["checkpoint"])
    key = next(k for k in checkpoint["model"] if k.startswith("unet.") and not torch.equal(checkpoint["model"][k],
                                                                                         checkpoint["ema"][k]))
    for weights in ("model", "ema"):
        assert export_main([str(trained["checkpoint"]), str(tmp_path / f"{weights}.safetensors"), "--weights",
                            weights]) == 0
        assert torch.equal(load_file(tmp_path / f"{weights}.safetensors")[key], checkpoint[weights][key])
    # ONNX: --weights was parsed and ignored (the EMA was exported); now the graphs hold what was asked for
    from inference.onnx_runner import EncoderGraph, OnnxPredictor
    from inference.predictor import Predictor

    assert export_main([str(trained["checkpoint"]), str(tmp_path / "model.onnx"), "--weights", "model"]) == 0
    runner = OnnxPredictor(tmp_path / "model.onnx")
    assert runner.encoder.get_modelmeta().custom_metadata_map["evaluated_weights"] == "model"
    size = runner.config.input_size
    generator = torch.Generator().manual_seed(0)
    inputs = {name: torch.randn(2, channels, size, size, generator=generator)
              for name, channels in (("image", 3), ("head_mask", 1), ("face", 3))}
    exported = torch.from_numpy(runner.encode(inputs)["conditioning"])
    with torch.no_grad():  # the EMA averages every weight, the encoder's too
        encoded = {weights: EncoderGraph(Predictor(trained["checkpoint"], overrides={"device": "cpu"},
                                                   use_weights=weights).model)(*inputs.values())[0]
                   for weights in ("model", "ema")}
    torch.testing.assert_close(exported, encoded["model"], rtol=1e-4, atol=1e-4)
    assert not torch.allclose(exported, encoded["ema"], rtol=1e-4, atol=1e-4)
    capsys.readouterr()

    # What cannot be exported as asked: one line, status 2, nothing written.
    no_ema = tmp_path / "no_ema.pt"
    save_checkpoint(no_ema, {k: v for k, v in checkpoint.items() if k != "ema"})
    cases = {
        "ema_without_ema": ([no_ema, tmp_path / "x.safetensors", "--weights", "ema"],
                            rf"{re.escape(str(no_ema))}: no EMA weights found"),
        "ema_without_ema_onnx": ([no_ema, tmp_path / "x.onnx", "--weights", "ema"],
                                 rf"{re.escape(str(no_ema))}: the EMA weights were asked for, but the file holds none"),
        "scheme_with_onnx": ([trained["checkpoint"], tmp_path / "x.onnx", "--scheme", "chong"],
                             r"--scheme applies to \.safetensors exports"),
        "config_with_safetensors": ([trained["checkpoint"], tmp_path / "x.safetensors", "--config", "a.yaml"],
                                    r"--config applies to ONNX exports"),
    }
    for case, (argv, pattern) in cases.items():
        try:
            status = export_main([str(a) for a in argv])
        except SystemExit as stop:  # argparse's parser.error
            status = stop.code
        assert status == 2, case
        assert re.search(pattern, capsys.readouterr().err), case
        assert not list(tmp_path.glob("x.*")), case


# === crashes turned into one line ===================================================================================


ENCODINGS = {
    "utf8_bom": lambda text: codecs.BOM_UTF8 + text.encode(),
    "utf16le_bom": lambda text: codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
    "utf16be_bom": lambda text: codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
    "utf32_bom": lambda text: codecs.BOM_UTF32_LE + text.encode("utf-32-le"),
    "crlf": lambda text: text.replace("\n", "\r\n").encode(),
}


@pytest.mark.parametrize("encoding", list(ENCODINGS))
def test_annotation_files_with_a_byte_order_mark_read_as_without(encoding, sources, tmp_path):
    """Spreadsheets and Windows editors save with a byte-order mark (before: 'image does not exist' for the first
    row's image, which exists): every loader reads the same rows as from the plain UTF-8 file."""
    encode = ENCODINGS[encoding]
    data = shutil.copytree(sources["gazefollow"], tmp_path / "gazefollow")
    for name in (TRAIN, TEST):
        (data / name).write_bytes(encode((data / name).read_text()))
    for split in ("train", "test"):
        plain, marked = GazeFollow(sources["gazefollow"], split), GazeFollow(data, split)
        assert marked._paths.tolist() == plain._paths.tolist() and marked._lines.tolist() == plain._lines.tolist()
        assert np.array_equal(marked._gaze_points, plain._gaze_points)
    vat = shutil.copytree(sources["vat"], tmp_path / "vat")
    for person_file in (vat / "annotations").glob("*/*/*/*.txt"):
        person_file.write_bytes(encode(person_file.read_text()))
    plain, marked = VideoAttentionTarget(sources["vat"], "test"), VideoAttentionTarget(vat, "test")
    assert marked._paths.tolist() == plain._paths.tolist() and np.array_equal(marked._head_boxes, plain._head_boxes)
    split_file = tmp_path / "test.txt"
    split_file.write_bytes(encode((sources["gaze360"] / "test.txt").read_text()))
    assert read_split_file(split_file).paths == read_split_file(sources["gaze360"] / "test.txt").paths
    boxes = tmp_path / "person1.txt"
    boxes.write_bytes(encode("00000001.jpg,1,2,30,40\n00000002.jpg,2,3,31,41\n"))
    assert list(read_head_box_file(boxes)) == ["00000001.jpg", "00000002.jpg"]


def test_a_training_run_reads_an_annotation_file_with_a_byte_order_mark(sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    table = rows(data / TRAIN)
    first = next(i for i, row in enumerate(table) if row[14] == "1")
    write_rows(data / TRAIN, [table[first]] + table[:first] + table[first + 1:])  # the first row is trained on
    (data / TRAIN).write_bytes(codecs.BOM_UTF8 + (data / TRAIN).read_bytes())
    status, message, _ = run_main(main_argv(data, tmp_path / "out"), capsys)
    assert (status, message) == (0, "")
    assert (tmp_path / "out" / "run" / "last.pt").is_file()


@pytest.mark.parametrize("case", ["latin1", "utf16_without_mark", "nul_byte", "broken_utf8_in_test_file"])
def test_annotation_text_that_is_not_utf8_is_named_by_file_and_line(case, sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    name = TEST if case == "broken_utf8_in_test_file" else TRAIN
    lines = (data / name).read_text().splitlines(keepends=True)
    if case == "latin1":
        lines[2] = lines[2].replace("synthetic", "synth\u00e9tique")
        (data / name).write_bytes("".join(lines).encode("latin-1"))
        expected = (rf"{re.escape(str(data / name))}:3: the GazeFollow annotation file is not UTF-8 text: byte 0xe9 "
                    r"at column \d+ cannot be decoded \(invalid continuation byte\); save it as UTF-8")
    elif case == "utf16_without_mark":
        (data / name).write_bytes("".join(lines).encode("utf-16-le"))
        expected = (rf"{re.escape(str(data / name))}:1: the GazeFollow annotation file holds NUL bytes \(UTF-16 text "
                    r"without a byte-order mark\?\); save it as UTF-8 text")
    elif case == "nul_byte":
        lines[1] = lines[1][:5] + "\0" + lines[1][5:]
        (data / name).write_text("".join(lines))
        expected = rf"{re.escape(str(data / name))}:2: the GazeFollow annotation file holds NUL bytes"
    else:
        (data / name).write_bytes("".join(lines).encode() + b"\xff\xfe")
        expected = (rf"{re.escape(str(data / name))}:{len(lines) + 1}: the GazeFollow annotation file is not UTF-8 "
                    r"text: byte 0xff at column 1")
    status, message, _ = run_main(main_argv(data, tmp_path / "out"), capsys)
    assert status == 2
    assert re.match(f"data error: {expected}", message), message
    assert not (tmp_path / "out" / "run" / "last.pt").exists()


@pytest.mark.parametrize("kind", ["png", "jpeg"])
def test_a_decompression_bomb_header_is_refused_before_decoding(kind, sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    image = first_train_image(data)
    image.write_bytes(bomb_png() if kind == "png" else bomb_jpeg())
    status, message, _ = run_main(main_argv(data, tmp_path / "out"), capsys)
    assert status == 2
    assert re.match(rf"data error: {re.escape(str(data / TRAIN))}:\d+: the image {re.escape(str(image))} (is refused "
                    r"as a possible decompression bomb|declares \d+ x \d+ pixels \([\d,]+ megapixels\), more than the "
                    r"decompression-bomb limit)", message), message
    assert not (tmp_path / "out" / "run" / "last.pt").exists()
    # The sample path (an image replaced after a cached check) refuses it before torchvision allocates its pixels.
    dataset = GazeFollow(data, "train", input_size=32, output_size=16)
    index = dataset._paths.tolist().index(str(image.relative_to(data)))
    with pytest.raises(DataError, match=rf"{re.escape(str(image))}: image of the annotation at .* (declares \d+ x "
                                        r"\d+ pixels|is refused as a possible decompression bomb)"):
        dataset[index]


def test_predict_refuses_a_decompression_bomb_image(trained, tmp_path, capsys):
    (tmp_path / "bomb.png").write_bytes(bomb_png())
    status, message, _ = run_predict(["--weights", trained["checkpoint"], "--image", tmp_path / "bomb.png",
                                      "--head_box", "1,1,5,5", "--out", tmp_path / "out"], capsys)
    assert status == 2
    assert message.startswith(f"predict.py: error: {tmp_path / 'bomb.png'}: refused as a possible decompression bomb")
    assert not (tmp_path / "out" / "predictions.csv").exists()


IMAGE_MODES = {
    "cmyk_jpeg": lambda pixels, path: Image.fromarray(pixels).convert("CMYK").save(path, "JPEG"),
    "palette_transparency_png": lambda pixels, path: Image.fromarray(pixels).convert("P").save(path, "PNG",
                                                                                            transparency=0),
    "grey_alpha_png": lambda pixels, path: Image.fromarray(pixels).convert("LA").save(path, "PNG"),
    "bilevel_png": lambda pixels, path: Image.fromarray(pixels).convert("1").save(path, "PNG"),
    "grey_jpeg": lambda pixels, path: Image.fromarray(pixels).convert("L").save(path, "JPEG"),
    "webp": lambda pixels, path: Image.fromarray(pixels).save(path, "WEBP", lossless=True),
    "rgb16_png": lambda pixels, path: path.write_bytes(png_bytes(pixels.astype(np.uint16) * 257)),
    "grey16_png": lambda pixels, path: path.write_bytes(png_bytes(pixels[..., :1].astype(np.uint16) * 257)),
    "grey16_tiff": lambda pixels, path: Image.fromarray(pixels[..., 0].astype(np.uint16) * 257).save(path, "TIFF"),
}


@pytest.mark.parametrize("mode", list(IMAGE_MODES))
def test_dataset_images_of_every_mode_decode_to_8_bit_rgb(mode, tmp_path):
    """8-bit modes decode as PIL converts them; 16-bit ones as their high byte (the 8-bit image they were made from),
    on both decoding paths (torchvision for PNG / JPEG, PIL for the rest)."""
    pixels = _scene((40, 30))
    path = tmp_path / "image"
    IMAGE_MODES[mode](pixels, path)
    decoded, scale = decode(read_image_file(path, "image"), 1, "image")
    assert decoded.dtype == torch.uint8 and decoded.shape == (3, 30, 40) and scale == 1.0
    if mode.endswith("16_png") or mode == "grey16_tiff":
        expected = pixels if mode == "rgb16_png" else np.repeat(pixels[..., :1], 3, axis=2)
    else:
        expected = np.asarray(Image.open(path).convert("RGB"))
    assert np.array_equal(decoded.permute(1, 2, 0).numpy(), expected)


def test_16_bit_training_images_and_depth_maps_give_the_8_bit_samples(sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    image = first_train_image(data)
    pixels = np.asarray(Image.open(image).convert("RGB"))
    Image.fromarray(pixels).save(tmp_path / "eight.png")
    relative = str(image.relative_to(data))
    depth = data / "depth" / Path(relative).relative_to("train")
    depth.parent.mkdir(parents=True, exist_ok=True)
    others = {row[0] for name in (TRAIN, TEST) for row in rows(data / name)} - {relative}
    for other in others:  # 8-bit depth maps for the other images (depth/ for train/, depth2/ for test2/)
        first, _, rest = other.partition("/")
        target = data / {"train": "depth", "test2": "depth2"}[first] / rest
        target.parent.mkdir(parents=True, exist_ok=True)
        Image.new("L", Image.open(data / other).size, 128).save(target, "PNG")
    grey = np.linspace(0, 255, pixels.shape[0] * pixels.shape[1]).astype(np.uint8).reshape(pixels.shape[:2])
    Image.fromarray(grey).save(depth, "PNG")
    eight = GazeFollow(data, "train", input_size=32, output_size=16, depth=True, augment=False)
    index = eight._paths.tolist().index(relative)
    reference = eight[index]
    image.write_bytes(png_bytes(pixels.astype(np.uint16) * 257))  # the same pixels, 16 bits, under the .jpg name
    depth.write_bytes(png_bytes(grey[..., None].astype(np.uint16) * 257))  # a 16-bit depth map (depth estimators)
    sixteen = GazeFollow(data, "train", input_size=32, output_size=16, depth=True, augment=False)[index]
    for key in ("image", "face", "depth"):
        assert torch.equal(sixteen[key], reference[key]), key
    # the run trains (was: NotImplementedError "compute_index_ranges_weights" not implemented for 'UInt16')
    status, message, _ = run_main(main_argv(data, tmp_path / "out", "gazefollow", "--depth_flag",
                                            "--list_resnet_depth_layers", "1", "1", "1", "1", "1",
                                            "--resnet_depth_inplanes", "8"), capsys)
    assert (status, message) == (0, "")
    assert (tmp_path / "out" / "run" / "last.pt").is_file()


@pytest.mark.parametrize("damage", ["empty", "cut_short", "not_a_cache", "binary"])
def test_a_damaged_validation_cache_is_ignored_with_a_note(damage, sources, tmp_path, capsys):
    datasets = {split: GazeFollow(sources["gazefollow"], split, input_size=32, output_size=16)
                for split in ("train", "test")}
    validate_datasets(datasets, tmp_path / "run", tmp_path / "out", progress=False)
    (cache,) = (tmp_path / "out" / CACHE_FOLDER).glob("*.json")
    content = {"empty": b"", "cut_short": cache.read_bytes()[:40], "not_a_cache": b"[1, 2]",
               "binary": b"\xff\xfe\x00garbage"}[damage]
    cache.write_bytes(content)
    capsys.readouterr()
    summary = validate_datasets(datasets, tmp_path / "run", tmp_path / "out", skip=True, progress=False)
    err = capsys.readouterr().err
    assert not summary["cached"]  # validated again ...
    first = next(line for line in err.splitlines() if line.startswith("note:"))
    assert first.startswith(f"note: {cache}: the cached data validation is ")
    assert ("empty" in first) == (damage == "empty")
    assert json.loads(cache.read_text())["summary"]["images"] == summary["images"]  # ... and the cache rewritten
    assert validate_datasets(datasets, tmp_path / "run", tmp_path / "out", skip=True, progress=False)["cached"]


def test_a_run_with_an_empty_validation_cache_trains(sources, tmp_path, capsys):
    data = shutil.copytree(sources["gazefollow"], tmp_path / "data")
    assert run_main(main_argv(data, tmp_path / "out"), capsys)[:2] == (0, "")
    (cache,) = (tmp_path / "out" / CACHE_FOLDER).glob("*.json")
    cache.write_text("")
    status, message, err = run_main(main_argv(data, tmp_path / "out", "gazefollow", "--skip_validation", "--tag",
                                              "again"), capsys)
    assert (status, message) == (0, "")
    assert f"note: {cache}: the cached data validation is empty" in err
    assert (tmp_path / "out" / "again" / "last.pt").is_file() and json.loads(cache.read_text())["summary"]


@pytest.mark.parametrize("size, box", [((1, 1), None), ((1, 1), "0,0,1,1"), ((400, 12), None), ((19, 19), None)])
def test_tiny_images_in_predict(size, box, trained, tmp_path, capsys):
    """Smaller than the smallest face MTCNN finds: no head is detected, and the user is told why (was: 'torch.cat():
    expected a non-empty list of Tensors'); with a head box given, the pixel is predicted."""
    pytest.importorskip("facenet_pytorch")
    Image.new("RGB", size, (120, 30, 40)).save(tmp_path / "tiny.png")
    argv = ["--weights", trained["checkpoint"], "--image", tmp_path / "tiny.png", "--out", tmp_path / "out"]
    status, message, err = run_predict(argv + (["--head_box", box] if box else []), capsys)
    assert (status, message) == (0, "")
    if box is None:
        assert f"mtcnn: a {size[0]}x{size[1]} image is smaller than the smallest face MTCNN finds (20 px)" in err
    assert len(predictions(tmp_path / "out")) == (1 if box else 0)


@pytest.fixture
def wandb_online(monkeypatch, tmp_path):
    """wandb configured online (an API key, no WANDB_MODE), its server at an address set by the test."""
    pytest.importorskip("wandb")
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    from types import SimpleNamespace

    return SimpleNamespace(no_wandb=False, tag="t", watch_wandb=False, print_every=1, to_dict=lambda: {"lr": 1.0})


@pytest.mark.timeout(300)
@pytest.mark.parametrize("server", ["refused", "unknown_host", "silent"])
def test_an_unreachable_wandb_server_falls_back_to_offline(server, wandb_online, monkeypatch, tmp_path, capsys):
    import engine.logging as run_logging

    listener = None
    if server == "refused":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{probe.getsockname()[1]}"
        probe.close()  # nothing listens there
    elif server == "unknown_host":
        url = "https://wandb.invalid"
    else:  # accepts connections and never answers: wandb.init itself times out
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        accepted = []
        threading.Thread(target=lambda: [accepted.append(listener.accept()) for _ in range(16)], daemon=True).start()
        url = f"http://127.0.0.1:{listener.getsockname()[1]}"
        monkeypatch.setattr(run_logging, "WANDB_INIT_TIMEOUT", 3.0)
    monkeypatch.setenv("WANDB_BASE_URL", url)
    timeouts = []
    connect = socket.create_connection

    def recording(address, timeout=None, **kwargs):
        timeouts.append(timeout)
        return connect(address, timeout=timeout, **kwargs)

    monkeypatch.setattr(run_logging.socket, "create_connection", recording)
    logger = run_logging.RunLogger(tmp_path / "run", wandb_online)
    try:
        assert logger.wandb.settings.mode == "offline"
        logger.log("train", 1, loss=0.5)
    finally:
        logger.close()
        if listener is not None:
            listener.close()
    notice = next(line for line in capsys.readouterr().err.splitlines() if line.startswith("wandb:"))
    cause = "the online run could not start" if server == "silent" else f"{url} cannot be reached"
    assert notice.startswith(f"wandb: {cause}") and notice.endswith("upload later with `wandb sync`")
    assert timeouts == [run_logging.WANDB_CONNECT_TIMEOUT] and run_logging.WANDB_CONNECT_TIMEOUT <= 5
    assert json.loads((tmp_path / "run" / "metrics.jsonl").read_text())["loss"] == 0.5
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))


def test_the_feature_cache_fingerprints_batchnorm_buffers(tmp_path):
    from models.feature_cache import encoder_fingerprint

    encoder = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4)).eval()
    assert encoder.state_dict()["1.num_batches_tracked"].dim() == 0
    first = encoder_fingerprint(encoder)  # was: RuntimeError "view Long as Byte" on the 0-d buffer
    assert encoder_fingerprint(encoder) == first
    with torch.no_grad():
        encoder[1].running_mean += 1.0
    assert encoder_fingerprint(encoder) != first


def test_a_timm_encoder_with_batchnorm_trains_with_the_feature_cache(sources, tmp_path, capsys):
    pytest.importorskip("timm")
    from models.feature_cache import MANIFEST
    from tests.test_timm_backbone import TIMM_TINY

    cache = tmp_path / "cache"

    def argv(tag):
        return [*TIMM_TINY, "--gaze_backbone", "timm", "--timm_model", "resnet18", "--freeze_scene",
                "--feature_cache", cache, "--source_dataset_dir", sources["gazefollow"], "--output_dir",
                tmp_path / "out", "--tag", tag, "--epochs", "1", "--train_augmentations", "flip"]

    status, message, _ = run_main(argv("r"), capsys)
    assert (status, message) == (0, "")
    assert json.loads((cache / MANIFEST).read_text())["encoder"] == "resnet18"
    assert list(cache.glob("*/*.pt"))
    # A damaged manifest is one line naming it (was: a JSONDecodeError traceback); the cache is left as it was.
    (cache / MANIFEST).write_text('{"format": 1, ')
    entries = sorted(cache.glob("*/*.pt"))
    status, message, _ = run_main(argv("r2"), capsys)
    assert status == 2
    assert message.startswith(f"data error: feature_cache {cache / MANIFEST}: not a readable manifest of a feature "
                              "cache")
    assert sorted(cache.glob("*/*.pt")) == entries and not (tmp_path / "out" / "r2" / "last.pt").exists()


def test_a_damaged_feature_cache_entry_is_computed_again(tmp_path, capsys):
    from models.build import get_model
    from models.feature_cache import FeatureCache
    from tests.test_timm_backbone import timm_config

    backbone = get_model(timm_config(freeze_scene=True)).eval().gaze_backbone
    cache = FeatureCache(tmp_path, backbone, str(tmp_path), 56)
    image = torch.randn(2, 3, 56, 56)
    first, _ = cache.scene_tokens(backbone, image, ["a.jpg", "b.jpg"], torch.tensor([False, False]))
    entry = cache.entry("a.jpg", False)
    entry.write_bytes(entry.read_bytes()[:100])  # cut short by a copy
    again, _ = cache.scene_tokens(backbone, image, ["a.jpg", "b.jpg"], torch.tensor([False, False]))
    assert torch.equal(again, first) and (cache.hits, cache.misses) == (1, 3)
    assert f"feature_cache: {entry} is damaged" in capsys.readouterr().err
    assert torch.load(entry, weights_only=True)["map"].shape == first[0].shape  # replaced by a whole entry
