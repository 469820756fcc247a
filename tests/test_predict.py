"""predict.py on the real demo frames (two people, VideoAttentionTarget head-box files) with a tiny checkpoint trained
here: the files written and their content, single-image mode, video input, K-sample averaging, the preprocessing
being the evaluation's, and a clear error for each kind of bad input. Without head boxes: heads
detected (MTCNN) and tracked on the real frames and on an MP4 written here with PyAV, 3D gaze from a Gaze360
checkpoint, the scene encoded once per frame for a backbone that declares it.
"""
import csv
import importlib.util
import json

import numpy as np
import pytest
import yaml
import torch
from PIL import Image

import predict
from datasets.gazefollow import GazeFollow
from datasets.synthetic import generate_gazefollow
from engine.build import build_formulation
from engine.checkpoint import load_checkpoint
from engine.config import ConfigError, parse_command_line
from engine.train import run
from eval.evaluate import predict_heatmaps
from inference.predictor import Predictor
from inference.sources import HeadBox, read_head_box_file
from tests.conftest import SHARED
from tests.test_end_to_end import TINY

DEMO = SHARED / "data" / "demo_frames"
PERSON_FILES = [DEMO / "person1.txt", DEMO / "person2.txt"]
FRAMES = ["00002575.jpg", "00002580.jpg", "00002585.jpg", "00002590.jpg", "00002595.jpg", "00002600.jpg"]
FRAME_SIZE = (1920, 1080)

pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason=f"the shared demo frames are absent ({DEMO})")


@pytest.fixture(scope="module")
def trained(tmp_path_factory, single_thread):
    """(checkpoint path, dataset root) of the end-to-end test's tiny model trained one epoch on synthetic images."""
    root = tmp_path_factory.mktemp("predict")
    generate_gazefollow(root / "data", n_train_images=4, n_test_images=1, seed=5)
    config, _ = parse_command_line(TINY + ["--source_dataset_dir", str(root / "data"), "--output_dir",
                                           str(root / "runs"), "--tag", "tiny", "--epochs", "1"])
    run(config)
    return root / "runs" / "tiny" / "last.pt", root / "data"


def predict_cli(capsys, *args):
    """Run predict.py's main in-process: (exit code, what it printed to stdout and stderr)."""
    code = predict.main([str(arg) for arg in args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def read_rows(out_dir):
    with open(out_dir / "predictions.csv", newline="") as stream:
        return list(csv.DictReader(stream))


def test_sequence_on_the_demo_frames(trained, tmp_path, capsys):
    weights, _ = trained
    out = tmp_path / "out"
    code, err = predict_cli(capsys, "--weights", weights, "--frames", DEMO, "--head_boxes", *PERSON_FILES,
                            "--out", out, "--skip_missing_frames", "--device", "cpu")
    assert code == 0, err
    tracks = {path.stem: read_head_box_file(path) for path in PERSON_FILES}
    rows = read_rows(out)
    assert [(row["frame"], row["person"]) for row in rows] == [(f, p) for f in FRAMES for p in ("person1", "person2")]
    for row in rows:
        width, height = int(row["image_width"]), int(row["image_height"])
        assert (width, height) == FRAME_SIZE
        box = [float(row[k]) for k in ("head_x_min", "head_y_min", "head_x_max", "head_y_max")]
        assert box == tracks[row["person"]][row["frame"]].box.tolist()
        assert float(row["eye_x_px"]) == (box[0] + box[2]) / 2 and float(row["eye_y_px"]) == (box[1] + box[3]) / 2
        gaze_x, gaze_y = float(row["gaze_x"]), float(row["gaze_y"])
        assert 0 <= gaze_x < 1 and 0 <= gaze_y < 1
        assert float(row["gaze_x_px"]) == pytest.approx(gaze_x * width)
        assert float(row["gaze_y_px"]) == pytest.approx(gaze_y * height)
        assert 0.0 <= float(row["inout"]) <= 1.0
        with Image.open(out / row["overlay"]) as overlay:
            assert overlay.size == FRAME_SIZE
    assert len(list((out / "overlays").iterdir())) == 12

    document = json.loads((out / "predictions.json").read_text())
    named = set(tracks["person1"]) | set(tracks["person2"])
    assert document["frames"] == 6 and sorted(document["frames_skipped"]) == sorted(named - set(FRAMES))
    assert document["sample_time_steps"] == 5 and document["sample_k"] == 1  # the checkpoint's configuration
    assert document["sampler"] == "ddim" and document["animation"] == "animation.gif"
    assert [{k: str(v) for k, v in row.items()} for row in document["predictions"]] == rows
    with Image.open(out / "animation.gif") as animation:
        assert animation.n_frames == 6 and animation.size == (640, 360)


def test_a_frame_missing_from_the_folder_is_an_error_naming_the_head_box_file_and_line(trained, tmp_path, capsys):
    code, err = predict_cli(capsys, "--weights", trained[0], "--frames", DEMO, "--head_boxes", *PERSON_FILES,
                            "--out", tmp_path, "--device", "cpu")
    assert code == 2
    assert f"{PERSON_FILES[0]}:2: frame '00002576.jpg' is not in the folder {DEMO}" in err
    assert "--skip_missing_frames" in err and not (tmp_path / "predictions.csv").exists()


def test_single_image_with_several_people_is_reproducible(trained, tmp_path, capsys):
    boxes = ["553,71,752,275", "1093,33,1347,299", "1800,-30,1950,100"]  # the third reaches past the corner
    outputs = []
    for name in ("first", "second"):
        code, err = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--head_box", boxes[0],
                                "--head_box", boxes[1], "--head_box", boxes[2], "--out", tmp_path / name,
                                "--device", "cpu")
        assert code == 0, err
        outputs.append((tmp_path / name / "predictions.csv").read_text())
    rows = read_rows(tmp_path / "first")
    assert [row["person"] for row in rows] == ["person1", "person2", "person3"]
    clamped = [float(rows[2][k]) for k in ("head_x_min", "head_y_min", "head_x_max", "head_y_max")]
    assert clamped == [1800.0, 0.0, 1920.0, 100.0]  # clamped to the image, as the datasets clamp annotated boxes
    assert sorted(p.name for p in (tmp_path / "first" / "overlays").iterdir()) == [
        "00002575_person1.png", "00002575_person2.png", "00002575_person3.png"]
    document = json.loads((tmp_path / "first" / "predictions.json").read_text())
    assert document["mode"] == "image" and document["animation"] is None
    assert not list((tmp_path / "first").glob("animation.*"))
    assert outputs[0] == outputs[1]  # same weights, image, boxes and seed: same predictions


def test_flags_override_the_checkpoint_sampler_settings(trained, tmp_path, capsys):
    code, err = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--head_box",
                            "553,71,752,275", "--out", tmp_path, "--device", "cpu", "--sample_time_steps", "2",
                            "--sample_k", "3", "--seed", "7")
    assert code == 0, err
    document = json.loads((tmp_path / "predictions.json").read_text())
    assert (document["sample_time_steps"], document["sample_k"], document["seed"]) == (2, 3, 7)
    code, err = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--head_box",
                            "553,71,752,275", "--out", tmp_path, "--device", "cpu", "--sample_time_steps", "51")
    assert code == 2 and "sample_time_steps" in err and "must be in [1, train_time_steps]" in err


def test_k_samples_are_the_mean_of_k_single_samples_drawn_in_one_batch(trained):
    predictor = Predictor(trained[0], overrides={"device": "cpu"})
    image = Image.open(DEMO / FRAMES[0]).convert("RGB")
    batch_one = predictor_batch(predictor, image, [553, 71, 752, 275], copies=1)
    batch_three = predictor_batch(predictor, image, [553, 71, 752, 275], copies=3)
    model, config = predictor.model, predictor.config
    torch.manual_seed(11)
    three = config.replace(sample_k=3)
    averaged, inout = predict_heatmaps(model, build_formulation(three), three, batch_one, torch.device("cpu"))
    torch.manual_seed(11)  # the same noise rows: input 0's k-th sample is row k
    single, inout_three = predict_heatmaps(model, predictor.formulation, config, batch_three, torch.device("cpu"))
    assert averaged.shape == (1, config.output_size, config.output_size)
    assert not np.allclose(single[0], single[1])  # the K samples differ, so the mean is not one of them
    np.testing.assert_allclose(averaged[0], single.mean(axis=0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(inout, inout_three[:1], rtol=1e-6)


def predictor_batch(predictor, image, box, copies):
    from datasets.transforms import model_inputs

    inputs = model_inputs(image, np.array(box, dtype=np.float64), predictor.config.input_size)
    return {key: inputs[key].unsqueeze(0).repeat(copies, *([1] * inputs[key].ndim))
            for key in ("image", "head_mask", "face")}


def test_prediction_preprocesses_like_the_evaluation(trained):
    """A test person of the synthetic set predicted from its image file and pixel head box gives the heatmap and
    in/out score the evaluation computes from the dataset's sample, with the same seed."""
    weights, data = trained
    predictor = Predictor(weights, overrides={"device": "cpu"})
    dataset = GazeFollow(data, split="test", input_size=predictor.config.input_size,
                         output_size=predictor.config.output_size)
    annotation = dataset.annotation(0)
    sample = dataset[0]
    batch = {key: sample[key].unsqueeze(0) for key in ("image", "head_mask", "face")}
    torch.manual_seed(predictor.config.seed)
    heatmaps, inout = predict_heatmaps(predictor.model, predictor.formulation, predictor.config, batch,
                                       torch.device("cpu"))
    image = Image.open(data / annotation.path).convert("RGB")
    [person] = predictor.predict(image, [HeadBox("person1", annotation.head_box, "test")])
    np.testing.assert_array_equal(person.heatmap, heatmaps[0])
    assert person.inout == float(inout[0])


def test_weights_without_a_stored_configuration_need_the_yaml_it_was_trained_with(trained, tmp_path, capsys):
    checkpoint = load_checkpoint(trained[0])
    # A bare state dict, with one tensor the model has no place for (reported, not silently dropped).
    torch.save({**checkpoint["model"], "inout_head.extra": torch.zeros(1)}, tmp_path / "bare.pt")
    args = ["--image", DEMO / FRAMES[0], "--head_box", "553,71,752,275", "--device", "cpu"]
    code, err = predict_cli(capsys, "--weights", tmp_path / "bare.pt", *args, "--out", tmp_path / "bare")
    assert code == 2 and "stores no configuration" in err and "--config" in err
    config_yaml = trained[0].parent / "config.yaml"
    code, out = predict_cli(capsys, "--weights", tmp_path / "bare.pt", "--config", config_yaml, *args, "--out",
                            tmp_path / "bare")
    assert code == 0 and "unexpected (not in the model): 1 keys" in out
    assert predict_cli(capsys, "--weights", trained[0], *args, "--out", tmp_path / "stored")[0] == 0
    assert read_rows(tmp_path / "bare") == read_rows(tmp_path / "stored")
    code, err = predict_cli(capsys, "--weights", trained[0], "--config", config_yaml, *args, "--out", tmp_path)
    assert code == 2 and "stores the configuration it was trained with" in err


def test_video_input_names_frames_as_ffmpeg_extracts_them(trained, tmp_path, capsys):
    frames = [Image.open(DEMO / name).convert("RGB").resize((480, 270)) for name in FRAMES[:3]]
    frames[0].save(tmp_path / "clip.gif", save_all=True, append_images=frames[1:], duration=100)
    lines = [f"{index:08d}.jpg,138,18,188,69" for index in (1, 2, 3)]
    (tmp_path / "person1.txt").write_text("\n".join(lines) + "\n")
    code, err = predict_cli(capsys, "--weights", trained[0], "--video", tmp_path / "clip.gif", "--head_boxes",
                            tmp_path / "person1.txt", "--out", tmp_path / "out", "--device", "cpu", "--animation_width",
                            "0", "--animation", "gif")
    assert code == 0, err
    rows = read_rows(tmp_path / "out")
    assert [row["frame"] for row in rows] == ["00000001.jpg", "00000002.jpg", "00000003.jpg"]
    assert {(row["image_width"], row["image_height"]) for row in rows} == {("480", "270")}
    with Image.open(tmp_path / "out" / "animation.gif") as animation:
        assert animation.n_frames == 3 and animation.size == (480, 270)

    (tmp_path / "person1.txt").write_text("\n".join(lines + ["00000009.jpg,138,18,188,69"]) + "\n")
    code, err = predict_cli(capsys, "--weights", trained[0], "--video", tmp_path / "clip.gif", "--head_boxes",
                            tmp_path / "person1.txt", "--out", tmp_path / "out", "--device", "cpu", "--overwrite")
    assert code == 2 and f"{tmp_path / 'person1.txt'}:4: frame '00000009.jpg' is not in the video" in err
    assert not list((tmp_path / "out").glob(".animation*"))  # the partial animation is removed
    assert [row["frame"] for row in read_rows(tmp_path / "out")] == ["00000001.jpg", "00000002.jpg", "00000003.jpg"]


def test_mp4_animation_reads_back_as_a_video(trained, tmp_path, capsys):
    pytest.importorskip("av", reason="MP4 needs PyAV, which is not installed here")
    code, err = predict_cli(capsys, "--weights", trained[0], "--frames", DEMO, "--head_boxes", *PERSON_FILES,
                            "--out", tmp_path / "out", "--skip_missing_frames", "--device", "cpu", "--animation", "mp4",
                            "--animation_width", "640")
    assert code == 0, err
    (tmp_path / "person1.txt").write_text("".join(f"{i:08d}.jpg,184,24,251,92\n" for i in range(1, 7)))
    code, err = predict_cli(capsys, "--weights", trained[0], "--video", tmp_path / "out" / "animation.mp4",
                            "--head_boxes", tmp_path / "person1.txt", "--out", tmp_path / "again", "--device", "cpu",
                            "--animation", "none")
    assert code == 0, err
    assert [row["image_width"] for row in read_rows(tmp_path / "again")] == ["640"] * 6


@pytest.mark.parametrize("case", [
    "unreadable_image", "missing_image", "inverted_box", "box_outside", "box_fields", "missing_weights",
    "malformed_line", "wrong_field_count", "duplicate_frame", "missing_frames_folder", "unreadable_video",
    "mp4_without_pyav", "zero_fps",
])
def test_bad_input_is_a_clear_error(trained, tmp_path, capsys, case):
    weights = trained[0]
    image = DEMO / FRAMES[0]
    bad_file = tmp_path / "person1.txt"
    sequence = ["--frames", DEMO, "--head_boxes", bad_file]
    args, expected = {
        "unreadable_image": (["--image", tmp_path / "broken.jpg", "--head_box", "1,1,5,5"],
                             f"{tmp_path / 'broken.jpg'}: cannot be read as an image"),
        "missing_image": (["--image", tmp_path / "absent.jpg", "--head_box", "1,1,5,5"],
                          f"image not found: {tmp_path / 'absent.jpg'}"),
        "inverted_box": (["--image", image, "--head_box", "752,71,553,275"],
                         "--head_box #1 (752,71,553,275): head box (752, 71, 553, 275) of person1 is inverted"),
        "box_outside": (["--image", image, "--head_box", "553,71,752,275", "--head_box", "2000,10,2100,90"],
                        "--head_box #2 (2000,10,2100,90): head box (2000, 10, 2100, 90) of person2 lies outside the "
                        f"1920x1080 image {image}"),
        "box_fields": (["--image", image, "--head_box", "553,71,752"], "expected a head box x_min,y_min,x_max,y_max"),
        "missing_weights": (["--image", image, "--head_box", "553,71,752,275"],
                            f"checkpoint not found: {tmp_path / 'absent.pt'}"),
        "malformed_line": (sequence, f"{bad_file}:2: field 'xmax' should be a number (pixels), found 'wide'"),
        "wrong_field_count": (sequence, f"{bad_file}:2: expected 5 comma-separated fields"),
        "duplicate_frame": (sequence, f"{bad_file}:2: frame '00002575.jpg' is listed twice (first at {bad_file}:1)"),
        "missing_frames_folder": (["--frames", tmp_path / "nowhere", "--head_boxes", bad_file],
                                  f"frames folder not found: {tmp_path / 'nowhere'}"),
        "unreadable_video": (["--video", tmp_path / "broken.gif", "--head_boxes", bad_file],
                             f"{tmp_path / 'broken.gif'}: cannot be read as a video"),
        "mp4_without_pyav": (sequence + ["--animation", "mp4"], "animation 'mp4' needs PyAV"),
        "zero_fps": (sequence + ["--fps", "0"], "fps: expected a positive number of frames per second, found 0.0"),
    }[case]
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a JPEG")
    (tmp_path / "broken.gif").write_bytes(b"GIF89a this is not a GIF")
    second_line = {"malformed_line": "00002580.jpg,1,2,wide,4", "wrong_field_count": "00002580.jpg,1,2,3",
                   "duplicate_frame": "00002575.jpg,553,71,752,275"}.get(case, "00002580.jpg,553,71,752,275")
    bad_file.write_text(f"00002575.jpg,553,71,752,275\n{second_line}\n")
    if case == "mp4_without_pyav" and importlib.util.find_spec("av") is not None:
        pytest.skip("PyAV is installed here: MP4 is available")
    code, err = predict_cli(capsys, "--weights", tmp_path / "absent.pt" if case == "missing_weights" else weights,
                            *args, "--out", tmp_path / "out", "--device", "cpu")
    assert code == 2
    assert expected in err
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_an_ema_run_predicts_with_its_averaged_weights_and_a_safetensors_export_loads(trained, tmp_path):
    """As its evaluation does, a checkpoint trained with ema_on predicts with the weights under "ema"; a safetensors
    export (weights only) needs --config and predicts with the exported weights."""
    from engine.checkpoint import save_checkpoint
    from safetensors.torch import save_file

    checkpoint = torch.load(trained[0], weights_only=True)
    averaged = {key: value + 0.5 if value.is_floating_point() else value.clone()
                for key, value in checkpoint["model"].items()}
    save_checkpoint(tmp_path / "ema.pt", {**checkpoint, "ema": averaged, "config": {**checkpoint["config"],
                                                                                    "ema_on": True}})
    predictor = Predictor(tmp_path / "ema.pt", overrides={"device": "cpu"})
    assert predictor.settings()["evaluated_weights"] == "ema"
    assert all(torch.equal(value, averaged[key]) for key, value in predictor.model.state_dict().items())
    assert Predictor(trained[0], overrides={"device": "cpu"}).settings()["evaluated_weights"] == "model"

    save_file(averaged, str(tmp_path / "w.safetensors"), metadata={"evaluated_weights": "ema"})
    with pytest.raises(ConfigError, match="stores no configuration"):
        Predictor(tmp_path / "w.safetensors", overrides={"device": "cpu"})
    (tmp_path / "run.yaml").write_text(yaml.safe_dump({k: v for k, v in checkpoint["config"].items()}))
    exported = Predictor(tmp_path / "w.safetensors", [tmp_path / "run.yaml"], overrides={"device": "cpu"})
    assert exported.settings()["evaluated_weights"] == "ema"
    assert all(torch.equal(value, averaged[key]) for key, value in exported.model.state_dict().items())


# --- without head boxes: detection, tracking, video files, 3D gaze ------------------------------------------------


def annotated_boxes():
    return {path.stem: {frame: head_box.box for frame, head_box in read_head_box_file(path).items()}
            for path in PERSON_FILES}


def detected_tracks(rows, scale=1.0, frame_names=None):
    """{track name: {annotated frame name: head box in the annotation's pixels}} from predictions.csv rows."""
    tracks = {}
    for row in rows:
        frame = frame_names[row["frame"]] if frame_names else row["frame"]
        box = np.array([float(row[k]) for k in ("head_x_min", "head_y_min", "head_x_max", "head_y_max")]) / scale
        tracks.setdefault(row["person"], {})[frame] = box
    return tracks


def assert_both_people_found_and_followed(tracks, frames):
    """Each annotated person is one track, present in every frame with head-box IoU >= 0.5."""
    from inference.tracking import box_iou

    for person, boxes in annotated_boxes().items():
        best = max(tracks, key=lambda name: sum(box_iou(tracks[name].get(f, [0, 0, 1, 1]), boxes[f]) for f in frames))
        ious = [box_iou(tracks[best][f], boxes[f]) if f in tracks[best] else 0.0 for f in frames]
        assert min(ious) >= 0.5, (person, best, ious)


def test_without_head_boxes_both_people_are_detected_and_tracked_in_every_demo_frame(trained, tmp_path, capsys):
    pytest.importorskip("facenet_pytorch")
    out = tmp_path / "out"
    code, printed = predict_cli(capsys, "--weights", trained[0], "--frames", DEMO, "--out", out, "--device", "cpu",
                                "--animation", "none", "--overlays", "off")
    assert code == 0, printed
    rows = read_rows(out)
    assert sorted({row["frame"] for row in rows}) == FRAMES
    assert_both_people_found_and_followed(detected_tracks(rows), FRAMES)
    assert all(float(row["head_score"]) >= 0.95 for row in rows)  # --min_head_score's default
    assert all(0 <= float(row["heatmap_peak"]) and 0 <= float(row["inout"]) <= 1 for row in rows)
    document = json.loads((out / "predictions.json").read_text())
    assert document["head_boxes_from"] == "mtcnn" and document["frames"] == 6
    counts = document["detection"]["detections"]
    assert counts["kept"] == len(rows) and counts["frames"] == 6
    assert f"kept {len(rows)} head detections" in printed
    # One CSV per track with that track's rows, in frame order.
    for person in document["people"]:
        with open(out / "tracks" / f"{person}.csv", newline="") as stream:
            track_rows = list(csv.DictReader(stream))
        assert track_rows == [row for row in rows if row["person"] == person]
    assert document["track_files"] == [f"tracks/{p}.csv" for p in dict.fromkeys(r["person"] for r in rows)]

    # Detection on the frame scaled down to 960 px (boxes scaled back to the frame's pixels) finds both people too.
    code, printed = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--out",
                                tmp_path / "small", "--device", "cpu", "--detect_width", "960")
    assert code == 0, printed
    assert_both_people_found_and_followed(detected_tracks(read_rows(tmp_path / "small")), FRAMES[:1])

    # The filters drop and count: no face of these frames scores above 1, and none is 2000 px tall.
    for flags, key in ((["--min_head_score", "1.01"], "dropped_below_min_head_score"),
                       (["--min_head_size", "2000"], "dropped_below_min_head_size")):
        code, printed = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--out",
                                    tmp_path / key, "--device", "cpu", *flags)
        assert code == 0, printed
        document = json.loads((tmp_path / key / "predictions.json").read_text())
        assert document["people"] == 0 and document["detection"]["detections"]["kept"] == 0
        assert document["detection"]["detections"][key] >= 2 and read_rows(tmp_path / key) == []


def write_demo_mp4(path, fps=5, size=(640, 360), frames=FRAMES):
    """An H.264 MP4 of the demo frames scaled to `size`, written with PyAV."""
    import av
    from fractions import Fraction

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = *size, "yuv420p"
        for name in frames:
            image = Image.open(DEMO / name).convert("RGB").resize(size)
            for packet in stream.encode(av.VideoFrame.from_image(image)):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)


def test_a_synthetic_mp4_without_head_boxes_gives_tracks_and_an_annotated_mp4_at_its_frame_rate(trained, tmp_path,
                                                                                                 capsys):
    pytest.importorskip("facenet_pytorch")
    import av

    clip = tmp_path / "clip.mp4"
    write_demo_mp4(clip)
    out = tmp_path / "out"
    code, printed = predict_cli(capsys, "--weights", trained[0], "--video", clip, "--out", out, "--device", "cpu",
                                "--smooth_boxes", "3", "--smooth_points", "3")
    assert code == 0, printed
    rows = read_rows(out)
    names = {f"{i:08d}.jpg": name for i, name in enumerate(FRAMES, 1)}
    assert sorted({row["frame"] for row in rows}) == sorted(names)
    assert_both_people_found_and_followed(detected_tracks(rows, scale=640 / 1920, frame_names=names), FRAMES)
    assert not (out / "overlays").exists()  # a video's overlays are in its annotated MP4
    with av.open(str(out / "animation.mp4")) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and float(stream.average_rate) == 5.0
        decoded = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
    assert len(decoded) == 6 and decoded[0].shape == (360, 640, 3)  # full size by default for an MP4
    document = json.loads((out / "predictions.json").read_text())
    assert document["animation"] == "animation.mp4" and document["video_fps"] == 5.0
    assert (document["smooth_boxes"], document["smooth_points"]) == (3, 3)
    # Smoothed points: each person's gaze_x is the 3-frame centred mean of the raw points (ends padded).
    code, printed = predict_cli(capsys, "--weights", trained[0], "--video", clip, "--out", tmp_path / "raw",
                                "--device", "cpu", "--smooth_boxes", "3", "--animation", "none")
    assert code == 0, printed
    raw, smoothed = read_rows(tmp_path / "raw"), rows
    for person in {row["person"] for row in raw}:
        x = np.array([float(row["gaze_x"]) for row in raw if row["person"] == person])
        padded = np.concatenate([x[:1], x, x[-1:]])
        expected = (padded[:-2] + padded[1:-1] + padded[2:]) / 3
        np.testing.assert_allclose([float(r["gaze_x"]) for r in smoothed if r["person"] == person], expected,
                                   atol=1e-9)

    # --start / --end (seconds) and --every_nth_frame select frames; the animation keeps the real time step.
    code, printed = predict_cli(capsys, "--weights", trained[0], "--video", clip, "--out", tmp_path / "part",
                                "--device", "cpu", "--start", "0.2", "--end", "1.0", "--every_nth_frame", "2")
    assert code == 0, printed
    assert sorted({row["frame"] for row in read_rows(tmp_path / "part")}) == ["00000002.jpg", "00000004.jpg"]
    with av.open(str(tmp_path / "part" / "animation.mp4")) as container:
        assert float(container.streams.video[0].average_rate) == 2.5


def test_the_yolo_detector_is_optional_and_refused_clearly(trained, tmp_path, capsys):
    code, printed = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--out", tmp_path,
                                "--device", "cpu", "--detector", f"yolo:{tmp_path / 'heads.pt'}")
    assert code == 2 and f"yolo:{tmp_path / 'heads.pt'}: detector file not found" in printed
    code, printed = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--out", tmp_path,
                                "--device", "cpu", "--detector", "retinaface")
    assert code == 2 and "expected one of mtcnn, yolo:PATH, found 'retinaface'" in printed
    if importlib.util.find_spec("ultralytics") is None:
        (tmp_path / "heads.pt").write_bytes(b"not read")
        code, printed = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--out", tmp_path,
                                    "--device", "cpu", "--detector", f"yolo:{tmp_path / 'heads.pt'}")
        assert code == 2 and "needs Ultralytics (`pip install ultralytics`)" in printed
    code, printed = predict_cli(capsys, "--weights", trained[0], "--frames", DEMO, "--head_boxes", *PERSON_FILES,
                                "--out", tmp_path / "out", "--device", "cpu", "--every_nth_frame", "2")
    assert code == 2 and "with --head_boxes the frames processed are those the files name" in printed
    for flags, message in ((["--head_box", "553,71,752,275", "--min_head_score", "0.5"],
                            "--min_head_score applies when heads are detected"),
                           (["--every_nth_frame", "3"], "--every_nth_frame applies to --frames / --video")):
        with pytest.raises(SystemExit):
            predict.main([str(a) for a in ("--weights", trained[0], "--image", DEMO / FRAMES[0], *flags)])
        assert message in capsys.readouterr().err


def test_the_yolo_detector_reads_ultralytics_boxes_and_scores(trained, tmp_path, capsys, monkeypatch):
    """With Ultralytics present (a stand-in module here: the package and a head model are not installed), the
    detector file's boxes (pixels, xyxy) and confidences become head boxes and head scores, filtered like MTCNN's."""
    import importlib.machinery
    import sys
    import types

    calls = []

    class Boxes:
        xyxy = torch.tensor([[553.0, 71.0, 752.0, 275.0], [1093.0, 33.0, 1347.0, 299.0], [10.0, 10.0, 20.0, 20.0]])
        conf = torch.tensor([0.9, 0.3, 0.99])

    class YOLO:
        def __init__(self, path):
            calls.append(path)

        def predict(self, image, device, verbose):
            assert image.size == FRAME_SIZE and device == "cpu" and verbose is False
            return [types.SimpleNamespace(boxes=Boxes())]

    module = types.ModuleType("ultralytics")
    module.YOLO, module.__spec__ = YOLO, importlib.machinery.ModuleSpec("ultralytics", None)
    monkeypatch.setitem(sys.modules, "ultralytics", module)
    (tmp_path / "heads.pt").write_bytes(b"weights")
    code, printed = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--out", tmp_path / "out",
                                "--device", "cpu", "--detector", f"yolo:{tmp_path / 'heads.pt'}",
                                "--min_head_score", "0.5")
    assert code == 0, printed
    assert calls == [str(tmp_path / "heads.pt")]
    [row] = read_rows(tmp_path / "out")  # 0.3 below the score, the 10-pixel box below the size
    assert [float(row[k]) for k in ("head_x_min", "head_y_min", "head_x_max", "head_y_max")] == [553, 71, 752, 275]
    assert float(row["head_score"]) == pytest.approx(0.9)
    counts = json.loads((tmp_path / "out" / "predictions.json").read_text())["detection"]["detections"]
    assert (counts["dropped_below_min_head_score"], counts["dropped_below_min_head_size"]) == (1, 1)


def tiny_gaze360_checkpoint(path, **changes):
    from engine.checkpoint import CHECKPOINT_FORMAT, save_checkpoint
    from gaze360.models import build_model
    from gaze360.options import GAZE360, crop_list

    config = load_config_gaze360({"input_size": 24, "num_frames": 1, "crop_sizes": [24, 16], "temporal": "lstm",
                                  "target": "sincos", "loss": "sincos_pinball", "backbone_layers": [1, 1],
                                  "backbone_inplanes": 4, "backbone_fc": 0, "feature_size": 8, "lstm_layers": 1,
                                  "magnification_deltas": [0, 4, 8],
                                  **changes}, GAZE360)
    torch.manual_seed(0)
    model = build_model(config, len(crop_list(config)))
    save_checkpoint(path, {"format": CHECKPOINT_FORMAT, "model": model.state_dict(), "config": config.to_dict()})
    return model.eval(), config


def load_config_gaze360(values, table):
    from engine.config import load_config

    return load_config((), values, table)


def test_gaze360_weights_add_each_heads_3d_gaze(trained, tmp_path, capsys):
    from gaze360.models import decode_yaw_pitch
    from gaze360.transforms import frame_views
    from inference.gaze3d import head_crop

    model, config = tiny_gaze360_checkpoint(tmp_path / "gaze360.pt")
    box = [553, 71, 752, 275]
    code, printed = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--head_box",
                                ",".join(map(str, box)), "--gaze360_weights", tmp_path / "gaze360.pt", "--out",
                                tmp_path / "out", "--device", "cpu")
    assert code == 0, printed
    [row] = read_rows(tmp_path / "out")
    crop = head_crop(Image.open(DEMO / FRAMES[0]).convert("RGB"), box)
    assert crop.size == (204, 204)  # square around the box centre: the longer side (204 px)
    with torch.no_grad():
        output = model(torch.stack(frame_views(crop, 24, [24, 16]))[None])
    yaw, pitch = decode_yaw_pitch(output["output"], "sincos")[0].tolist()
    assert float(row["yaw"]) == pytest.approx(yaw, abs=1e-5) and float(row["pitch"]) == pytest.approx(pitch, abs=1e-5)
    assert float(row["gaze3d_uncertainty"]) == pytest.approx(float(output["sigma"][0, 0]), abs=1e-5)
    vector = np.array([float(row[k]) for k in ("gaze3d_x", "gaze3d_y", "gaze3d_z")])
    np.testing.assert_allclose(vector, [np.cos(pitch) * np.sin(yaw), np.sin(pitch), -np.cos(pitch) * np.cos(yaw)],
                               atol=1e-5)
    document = json.loads((tmp_path / "out" / "predictions.json").read_text())
    assert document["gaze360_weights"] == str(tmp_path / "gaze360.pt")
    # The arrow is drawn: the overlay differs from one without 3D gaze.
    assert predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--head_box",
                       ",".join(map(str, box)), "--out", tmp_path / "plain", "--device", "cpu")[0] == 0
    with Image.open(tmp_path / "out" / row["overlay"]) as with_arrow, \
            Image.open(tmp_path / "plain" / row["overlay"]) as without:
        assert not np.array_equal(np.asarray(with_arrow), np.asarray(without))

    # A 3-frame sequence model sees each person's previous, own and next processed frame (ends repeated).
    import av

    sequence_model, _ = tiny_gaze360_checkpoint(tmp_path / "sequence.pt", num_frames=3, frame_crops="all")
    write_demo_mp4(tmp_path / "clip.mp4", frames=FRAMES[:4])
    boxes = {i: [184 + 3 * i, 24, 251 + 3 * i, 92] for i in range(1, 5)}
    (tmp_path / "person1.txt").write_text("".join(f"{i:08d}.jpg,{','.join(map(str, b))}\n" for i, b in boxes.items()))
    code, printed = predict_cli(capsys, "--weights", trained[0], "--video", tmp_path / "clip.mp4", "--head_boxes",
                                tmp_path / "person1.txt", "--gaze360_weights", tmp_path / "sequence.pt", "--out",
                                tmp_path / "seq", "--device", "cpu", "--animation", "none")
    assert code == 0, printed
    rows = read_rows(tmp_path / "seq")
    with av.open(str(tmp_path / "clip.mp4")) as container:
        images = [frame.to_image().convert("RGB") for frame in container.decode(video=0)]
    crops = [torch.stack(frame_views(head_crop(image, boxes[i]), 24, [24, 16])) for i, image in enumerate(images, 1)]
    for j, window in ((0, [0, 0, 1]), (1, [0, 1, 2]), (3, [2, 3, 3])):
        with torch.no_grad():
            output = sequence_model(torch.cat([crops[k] for k in window])[None])
        yaw, pitch = decode_yaw_pitch(output["output"], "sincos")[0].tolist()
        assert float(rows[j]["yaw"]) == pytest.approx(yaw, abs=1e-5)
        assert float(rows[j]["pitch"]) == pytest.approx(pitch, abs=1e-5)
    torch.save({"model": model.state_dict()}, tmp_path / "bare.pt")
    code, printed = predict_cli(capsys, "--weights", trained[0], "--image", DEMO / FRAMES[0], "--head_box",
                                ",".join(map(str, box)), "--gaze360_weights", tmp_path / "bare.pt", "--out",
                                tmp_path / "bare", "--device", "cpu")
    assert code == 2 and "not a checkpoint of the Gaze360 trainer" in printed


def test_a_backbone_with_a_person_independent_scene_gets_one_image_per_frame(trained):
    """All people of a frame are one batch; a backbone declaring person_independent_scene receives the image once
    (batch 1) with every person's head mask and face, and the predictions are those of the full batch."""
    predictor = Predictor(trained[0], overrides={"device": "cpu"})
    image = Image.open(DEMO / FRAMES[0]).convert("RGB")
    people = [HeadBox(f"person{i}", np.array(box, dtype=float), "test")
              for i, box in enumerate([[553, 71, 752, 275], [1093, 33, 1347, 299], [100, 100, 300, 300]], 1)]
    expected = predictor.predict(image, people)
    backbone, seen = predictor.model.gaze_backbone, []

    class SharedScene(torch.nn.Module):
        person_independent_scene = True

        def __init__(self):
            super().__init__()
            self.inner = backbone

        def forward(self, image, head_mask, face):
            seen.append((image.shape[0], head_mask.shape[0], face.shape[0]))
            return self.inner(image.expand(head_mask.shape[0], -1, -1, -1), head_mask, face)

    predictor.model.gaze_backbone = SharedScene()
    shared = predictor.predict(image, people)
    assert seen == [(1, 3, 3)]
    for a, b in zip(expected, shared):
        np.testing.assert_allclose(a.heatmap, b.heatmap, atol=1e-5)
        assert a.inout == pytest.approx(b.inout, abs=1e-6)


# --- ONNX export and hub ----------------------------------------------------------------------------------------


def test_onnx_export_runs_the_configured_sampler_with_pytorchs_heatmaps(trained, tmp_path, capsys):
    pytest.importorskip("onnxruntime")
    from inference.onnx_runner import OnnxPredictor, graph_paths
    from pretrained.export import main as export_main

    assert export_main([str(trained[0]), str(tmp_path / "tiny.onnx")]) == 0
    assert all(path.is_file() for path in graph_paths(tmp_path / "tiny.onnx"))
    predictor = Predictor(trained[0], overrides={"device": "cpu", "sample_k": 2})
    image = Image.open(DEMO / FRAMES[0]).convert("RGB")
    people = [HeadBox("a", np.array([553.0, 71, 752, 275]), "t"), HeadBox("b", np.array([1093.0, 33, 1347, 299]), "t")]
    expected = predictor.predict(image, people)
    runner = OnnxPredictor(tmp_path / "tiny.onnx")
    assert runner.config.sampler == predictor.config.sampler and runner.config.sample_time_steps == 5
    runner.config = runner.config.replace(sample_k=2)
    from datasets.transforms import model_inputs

    inputs = [model_inputs(image, person.box, predictor.config.input_size) for person in people]
    batch = {key: torch.stack([person[key] for person in inputs]) for key in ("image", "head_mask", "face")}
    torch.manual_seed(predictor.config.seed)
    heatmaps, inout = runner.predict(batch)
    for person, heatmap, score in zip(expected, heatmaps, inout):
        assert np.abs(heatmap - person.heatmap).max() <= 1e-4
        assert abs(float(score) - person.inout) <= 1e-5
    assert not np.allclose(heatmaps[0], heatmaps[1], atol=1e-3)  # two different people, two different maps


def test_torch_hub_builds_the_model_from_a_checkpoint(trained):
    from tests.conftest import ROOT

    model = torch.hub.load(str(ROOT), "model", weights=str(trained[0]), source="local")
    reference = Predictor(trained[0], overrides={"device": "cpu"}).model
    assert not model.training
    assert all(torch.equal(value, reference.state_dict()[key]) for key, value in model.state_dict().items())
    predictor = torch.hub.load(str(ROOT), "predictor", weights=str(trained[0]), source="local", device="cpu")
    assert isinstance(predictor, Predictor)
    with pytest.raises(FileNotFoundError, match="absent.pt"):
        torch.hub.load(str(ROOT), "model", weights=str(trained[0].parent / "absent.pt"), source="local")
