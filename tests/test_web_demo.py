"""The web demo's server (inference/app.py) through its HTTP API: an image's detected and drawn heads predicted as
predict.py predicts them, the K sampled points being the samples the heatmap averages, a video's progress and
result, the sliders only for a generative decoder, and a clear message (never a traceback) for every bad upload or
request. The page itself in a real browser: tests/test_web_demo_browser.py.
"""
import io
import json

import numpy as np
import pytest
from PIL import Image

from eval.metrics import argmax_point
from inference import app
from inference.app import sample_points
from inference.predictor import Predictor
from inference.sources import HeadBox
from tests.conftest import SHARED
from tests.web_demo_support import call, predict_py_rows, same_value, serving, train_tiny

DEMO = SHARED / "data" / "demo_frames"
FRAME = DEMO / "00002575.jpg"

pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason=f"the shared demo frames are absent ({DEMO})")


@pytest.fixture(scope="module")
def weights(tmp_path_factory, single_thread):
    pytest.importorskip("facenet_pytorch")  # the demo's head detector (MTCNN), installed by the Makefile
    return train_tiny(tmp_path_factory.mktemp("web_demo"))


@pytest.fixture(scope="module")
def server(weights, tmp_path_factory):
    with serving(weights, tmp_path_factory.mktemp("work"), max_upload_mb=5, max_video_frames=20) as served:
        yield served


def upload(server, path, name=None):
    return call(server, f"/api/upload?name={name or path.name}", path.read_bytes())


def assert_rows_equal(page_rows, csv_rows):
    assert len(page_rows) == len(csv_rows)
    for page, written in zip(page_rows, csv_rows):
        assert set(page) == set(written)
        for key, value in written.items():
            assert same_value(str(page[key]) if page[key] != "" else "", value), (page["person"], key)


def test_an_image_is_predicted_as_predict_py_predicts_it(server, tmp_path):
    status, answer = upload(server, FRAME)
    assert status == 200 and answer["kind"] == "image" and (answer["width"], answer["height"]) == (1920, 1080)
    assert len(answer["heads"]) >= 2  # the two cooks (MTCNN, predict.py's thresholds)
    detected = [{"detected": i} for i in range(len(answer["heads"]))]
    status, result = call(server, "/api/predict", {"upload": answer["upload"], "heads": detected})
    assert status == 200, result
    weights = server.demo.predictor.weights
    rows = predict_py_rows(tmp_path / "detected", "--weights", weights, "--image", FRAME)  # heads detected too
    assert_rows_equal(result["rows"], rows)
    for row in rows:  # the overlays are predict.py's, pixel for pixel
        status, overlay = call(server, result["overlays"][row["person"]])
        with Image.open(tmp_path / "detected" / row["overlay"]) as written:
            assert status == 200 and np.array_equal(np.asarray(Image.open(io.BytesIO(overlay))), np.asarray(written))
    status, table = call(server, result["csv"])
    assert status == 200 and table.decode().splitlines()[0].startswith("frame,person,")
    assert result["samples"] == {}  # K = 1: no sample points

    # A box drawn on the page is a --head_box; the detected ones keep their score (a typed box has none).
    status, result = call(server, "/api/predict", {"upload": answer["upload"],
                                                   "heads": detected + [{"box": [100, 500, 300, 700]}]})
    boxes = [",".join(str(v) for v in head["box"]) for head in answer["heads"]] + ["100,500,300,700"]
    given = predict_py_rows(tmp_path / "given", "--weights", weights, "--image", FRAME,
                            *[arg for box in boxes for arg in ("--head_box", box)])
    assert [row["head_score"] for row in result["rows"]] == [head["score"] for head in answer["heads"]] + [""]
    for row in given:
        row["head_score"] = ""
    assert_rows_equal([{**row, "head_score": ""} for row in result["rows"]], given)


def test_the_k_sampled_points_are_the_samples_the_heatmap_averages(weights):
    predictor = Predictor(weights, overrides={"device": "cpu"})
    image = Image.open(FRAME).convert("RGB")
    boxes = [HeadBox("person1", np.array([565.0, 71.0, 772.0, 274.0]), "test"),
             HeadBox("person2", np.array([1044.0, 61.0, 1342.0, 306.0]), "test")]
    k = 4
    mean = predictor.with_options(sample_k=k, sample_time_steps=3).predict(image, boxes)
    single = predictor.with_options(sample_k=1, sample_time_steps=3)
    drawn = single.predict(image, [box for box in boxes for _ in range(k)])
    points = sample_points(predictor.with_options(sample_time_steps=3), image, boxes, k)
    for i, prediction in enumerate(mean):
        samples = [p.heatmap for p in drawn[i * k:(i + 1) * k]]
        np.testing.assert_allclose(np.mean(samples, axis=0), prediction.heatmap, atol=1e-5)
        assert points[i] == [list(argmax_point(heatmap)) for heatmap in samples]
    assert len({tuple(p) for p in points[0]}) > 1  # K different samples, not one repeated


def test_the_sliders_change_k_and_steps_and_the_answer_says_so(server):
    status, info = call(server, "/api/info")
    assert status == 200 and info["sampling"] == {"sample_k": 1, "max_k": 32, "sample_time_steps": 5,
                                                  "max_steps": 50, "sampler": "ddim"}
    _, answer = upload(server, FRAME)
    request = {"upload": answer["upload"], "heads": [{"box": [565, 71, 772, 274]}], "sample_k": 3,
               "sample_time_steps": 2}
    status, result = call(server, "/api/predict", request)
    assert status == 200 and (result["settings"]["sample_k"], result["settings"]["sample_time_steps"]) == (3, 2)
    assert len(result["samples"]["person1"]) == 3
    for bad, message in ((("sample_k", 0), "K (samples): expected 1 to 32, found 0"),
                         (("sample_time_steps", 51), "steps: expected 1 to 50, found 51"),
                         (("sample_k", "many"), "K (samples): expected a whole number")):
        status, result = call(server, "/api/predict", {**request, bad[0]: bad[1]})
        assert status == 400 and message in result["error"]


def test_a_decoder_that_does_not_sample_gets_no_sliders(weights, tmp_path, monkeypatch):
    predictor = Predictor(weights, overrides={"device": "cpu"})
    monkeypatch.setattr(type(predictor.model), "generative", False)  # as a regression (direct) decoder declares
    demo = app.GazeDemo(predictor, work_dir=tmp_path)
    assert demo.info()["sampling"] is None
    answer = demo.upload(FRAME.name, FRAME.read_bytes())
    assert answer["heads"] == []  # no detector: boxes are drawn on the page
    with pytest.raises(app.UserError, match="does not sample: K and the number of steps do not apply"):
        demo.predict({"upload": answer["upload"], "heads": [{"box": [565, 71, 772, 274]}], "sample_k": 2})
    result = demo.predict({"upload": answer["upload"], "heads": [{"box": [565, 71, 772, 274]}]})
    assert result["samples"] == {} and len(result["rows"]) == 1


def test_a_video_is_predicted_with_progress_as_predict_py_predicts_it(server, tmp_path):
    from tests.test_predict import write_demo_mp4

    clip = tmp_path / "clip.mp4"
    write_demo_mp4(clip, size=(640, 360), frames=["00002575.jpg", "00002580.jpg", "00002585.jpg"])
    status, answer = upload(server, clip)
    assert status == 200 and answer["kind"] == "video" and answer["frames"] == 3 and answer["fps"] == 5.0
    reports = []
    job = server.demo.jobs  # the progress the page polls: recorded at every report
    status, started = call(server, "/api/video", {"upload": answer["upload"], "every_nth_frame": 1})
    assert status == 200 and started["state"] == "running"
    running = job[started["job"]]
    while running.state == "running":
        reports.append((running.stage, running.done, running.total))
        running_status = call(server, f"/api/jobs/{started['job']}")[1]
        assert running_status["job"] == started["job"]
        __import__("time").sleep(0.05)
    status, finished = call(server, f"/api/jobs/{started['job']}")
    assert finished["state"] == "done", finished["error"]
    assert (finished["stage"], finished["done"], finished["total"]) == ("predict", 3, 3)
    rows = predict_py_rows(tmp_path / "predict", "--weights", server.demo.predictor.weights, "--video", clip)
    assert_rows_equal(finished["result"]["rows"], rows)
    assert finished["result"]["people"] == sorted({row["person"] for row in rows})
    status, animation = call(server, finished["result"]["animation"])
    assert status == 200 and animation[4:8] == b"ftyp"  # an MP4
    assert all(stage == "predict" and done <= 3 for stage, done, total in reports if stage != "starting")


def test_bad_uploads_and_requests_get_a_clear_message(server, tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("not a picture\n")
    broken_jpeg = tmp_path / "broken.jpg"
    broken_jpeg.write_bytes(FRAME.read_bytes()[:5000])
    broken_video = tmp_path / "broken.mp4"
    broken_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    huge = tmp_path / "huge.jpg"
    huge.write_bytes(FRAME.read_bytes() * 30)  # over the server's 5 MB
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    cases = [(text, 400, "notes.txt: not an image or a video this page can read"),
             (broken_jpeg, 400, "broken.jpg: cannot be read as an image"),
             (broken_video, 400, "broken.mp4: cannot be read as a video"),
             (huge, 413, "more than this page accepts (5 MB, --max_upload_mb)"),
             (empty, 400, "empty.png: the file is empty")]
    for path, expected_status, message in cases:
        status, answer = upload(server, path)
        assert (status, set(answer)) == (expected_status, {"error"}), (path.name, answer)
        assert message in answer["error"] and "Traceback" not in answer["error"], answer["error"]
        assert str(server.demo.work_dir) not in answer["error"]  # named as uploaded, not by the working copy
    _, image = upload(server, FRAME)
    requests = [({"upload": "gone", "heads": [{"detected": 0}]}, "that upload is no longer here"),
                ({"upload": image["upload"], "heads": []}, "no head box: draw a box around a head"),
                ({"upload": image["upload"], "heads": [{"box": [3000, 10, 3100, 90]}]},
                 "head box #1 drawn on the page: head box (3000, 10, 3100, 90) of person1 lies outside the 1920x1080 "
                 "image 00002575.jpg"),
                ({"upload": image["upload"], "heads": [{"box": [1, 2, "x", 4]}]}, "should be four numbers"),
                ({"upload": image["upload"], "heads": [{"detected": 99}]}, "detection 99 does not exist"),
                ({"upload": image["upload"], "every_nth_frame": 1}, "is an image, not a video")]
    for request, message in requests:
        path = "/api/video" if "every_nth_frame" in request else "/api/predict"
        status, answer = call(server, path, request)
        assert status == 400 and message in answer["error"], answer
    status, answer = call(server, "/api/predict", b"{not json", {"Content-Type": "application/json"})
    assert status == 400 and "not JSON" in answer["error"]
    for path in (f"/files/{image['upload']}/../../../etc/passwd", f"/files/{image['upload']}/%2e%2e/x",
                 "/files/unknown/preview.jpg", "/nothing-here"):
        status, answer = call(server, path)
        assert status == 404 and "error" in answer, path


def test_a_video_longer_than_the_page_predicts_is_refused_before_predicting(server, tmp_path):
    from tests.test_predict import write_demo_mp4

    clip = tmp_path / "long.mp4"
    write_demo_mp4(clip, size=(64, 36), frames=["00002575.jpg"] * 25)
    _, answer = upload(server, clip)
    status, refused = call(server, "/api/video", {"upload": answer["upload"], "every_nth_frame": 1})
    assert status == 400 and "25 frames, every 1: 25 frames to predict, more than this page predicts (20" in (
        refused["error"]) and "every n-th frame with n >= 2" in refused["error"]


def test_the_command_line_refuses_what_it_cannot_serve(tmp_path, capsys):
    assert app.main(["--weights", str(tmp_path / "missing.pt"), "--port", "0"]) == 2
    assert "checkpoint not found" in capsys.readouterr().err


def test_a_hub_folder_is_served_like_its_checkpoint(weights, tmp_path):
    from pretrained.hub import HubCheckpoint

    HubCheckpoint.from_checkpoint(weights).save_pretrained(tmp_path / "hub")
    results = []
    for source in (weights, tmp_path / "hub"):
        demo = app.GazeDemo(Predictor(source, overrides={"device": "cpu"}), work_dir=tmp_path / source.name)
        answer = demo.upload(FRAME.name, FRAME.read_bytes())
        result = demo.predict({"upload": answer["upload"], "heads": [{"box": [565, 71, 772, 274]}]})
        results.append(json.dumps({k: v for k, v in result["rows"][0].items()}))
        demo.close()
    assert results[0] == results[1]


def test_gaze360_weights_add_the_3d_gaze_to_the_table_and_the_overlay(weights, tmp_path):
    from inference.gaze3d import Gaze3DEstimator
    from tests.test_predict import tiny_gaze360_checkpoint

    tiny_gaze360_checkpoint(tmp_path / "gaze360.pt")
    predictor = Predictor(weights, overrides={"device": "cpu"})
    demo = app.GazeDemo(predictor, gaze3d=Gaze3DEstimator(tmp_path / "gaze360.pt", predictor.device),
                        work_dir=tmp_path / "work")
    assert demo.info()["gaze3d"] is True
    answer = demo.upload(FRAME.name, FRAME.read_bytes())
    result = demo.predict({"upload": answer["upload"], "heads": [{"box": [565, 71, 772, 274]}]})
    rows = predict_py_rows(tmp_path / "predict", "--weights", weights, "--image", FRAME, "--head_box",
                           "565,71,772,274", "--gaze360_weights", tmp_path / "gaze360.pt")
    assert result["rows"][0]["yaw"] != "" and rows[0]["yaw"] != ""
    assert_rows_equal(result["rows"], rows)
    overlay = demo.file(answer["upload"], result["overlays"]["person1"].split("/", 3)[3])  # /files/KEY/PATH
    with Image.open(overlay) as shown, Image.open(tmp_path / "predict" / rows[0]["overlay"]) as written:
        assert np.array_equal(np.asarray(shown), np.asarray(written))  # the red 3D arrow included
    demo.close()


def test_the_readme_command_serves_the_page_until_ctrl_c(weights):
    import signal
    import subprocess
    import sys
    import urllib.request

    from tests.conftest import ROOT

    command = [sys.executable, "-m", "inference.app", "--weights", str(weights), "--port", "0", "--detector", "none"]
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()  # "serving the gaze-following demo of W at http://127.0.0.1:PORT/ ..."
        assert "serving the gaze-following demo" in line, line + process.stderr.read()
        url = line.split(" at ")[1].split()[0]
        with urllib.request.urlopen(url, timeout=60) as page:
            assert b"<title>Gaze following demo</title>" in page.read()
        with urllib.request.urlopen(url + "api/info", timeout=60) as info:
            assert json.loads(info.read())["detector"] is None
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
