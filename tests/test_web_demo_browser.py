"""The web demo's page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`, which `make
test` installs) driven by Selenium. One of the real demo frames is uploaded; the overlay and the table must show
predict.py's values for the same image, the K slider must re-predict and draw the K sampled points, a box drawn
with the mouse must become a person, and a non-image upload must give a clear message. The screenshot of the
working page in docs/ is written by this test's code path: `WEB_DEMO_SCREENSHOT=docs/web_demo.png pytest
tests/test_web_demo_browser.py`.

Without ../shared the test is skipped. Without Chromium it is skipped on a developer's machine (with the command
that installs it) and fails on CI (CI=true), where `make test` must have installed it.
"""
import io
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from tests.conftest import SHARED
from tests.web_demo_support import call, predict_py_rows, same_value, serving, train_tiny

DEMO = SHARED / "data" / "demo_frames"
FRAME = DEMO / "00002580.jpg"
CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
# The machine's network is closed: without the background-networking flags Chromium's own connections (updates,
# sync, safe browsing) are refused many at a time.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--window-size=1400,1000")
WAIT = 180  # seconds a step may take on a busy 2-core machine

pytestmark = pytest.mark.skipif(not DEMO.is_dir(), reason=f"the shared demo frames are absent ({DEMO})")


def require_browser():
    missing = [str(path) for path in (CHROMIUM, CHROMEDRIVER) if not path.is_file()]
    try:
        import selenium  # noqa: F401
    except ImportError:
        missing.append("the selenium package (requirements-test.txt)")
    if missing:
        message = (f"the browser test needs {', '.join(missing)}: `apt-get install chromium chromium-driver` and "
                   "`pip install selenium` (make test does both)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture(scope="module")
def browser():
    require_browser()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")  # a fresh profile: nothing from an earlier run
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(WAIT)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="module")
def server(tmp_path_factory, single_thread):
    pytest.importorskip("facenet_pytorch")
    weights = train_tiny(tmp_path_factory.mktemp("web_demo_browser"))
    with serving(weights, tmp_path_factory.mktemp("work")) as served:
        yield served


def wait(driver, condition, what: str):
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(driver, WAIT, poll_frequency=0.2).until(lambda d: condition(d))
    except Exception:
        message = driver.find_element("id", "message").text
        raise AssertionError(f"the page did not show {what} within {WAIT} s (its message: {message!r})") from None


def page_rows(driver) -> list[dict]:
    """The table's rows as {key: exact value} (each cell's data-keys / data-values)."""
    return driver.execute_script("""
        return [...document.querySelectorAll('#table tbody tr')].map((tr) => {
          const row = {};
          for (const td of tr.querySelectorAll('td')) {
            const keys = td.dataset.keys.split(' '), values = td.dataset.values.split(' ');
            keys.forEach((key, i) => { row[key] = values[i]; });
          }
          return row;
        });""")


def upload(driver, path):
    driver.execute_script("document.getElementById('message').hidden = true;")
    driver.find_element("id", "file").send_keys(str(path))


def overlay_ready(driver, samples: str = "0") -> bool:
    return driver.execute_script(
        "const o = document.getElementById('overlay'); return document.body.dataset.busy === 'false' && "
        "o.complete && o.naturalWidth > 0 && o.dataset.samples === arguments[0] && "
        "!document.getElementById('results').hidden;", samples)


def assert_table_is_predict_py(driver, rows):
    shown = page_rows(driver)
    assert [row["person"] for row in shown] == [row["person"] for row in rows]
    for page, written in zip(shown, rows):
        for key, value in page.items():
            assert same_value(value, written[key]), (page["person"], key, value, written[key])


def test_the_page_predicts_an_uploaded_frame_as_predict_py_does(browser, server, tmp_path):
    from selenium.webdriver.common.action_chains import ActionChains

    browser.get(server.url)
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "the model")
    assert browser.find_element("id", "sampling").is_displayed()  # the tiny model's decoder samples
    upload(browser, FRAME)
    wait(browser, overlay_ready, "the overlay")
    weights = server.demo.predictor.weights
    rows = predict_py_rows(tmp_path / "k1", "--weights", weights, "--image", FRAME)  # heads detected, as the page
    assert len(rows) >= 2
    assert_table_is_predict_py(browser, rows)
    shown_overlay = browser.execute_script("return document.getElementById('overlay').src")
    _, png = call(server, shown_overlay[len(server.url) - 1:])
    with Image.open(tmp_path / "k1" / rows[0]["overlay"]) as written:  # person1's overlay, pixel for pixel
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(written))

    # The K slider: 4 samples, predicted again, their points drawn over the overlay; the table is predict.py's.
    browser.execute_script("""const k = document.getElementById('sample-k'); k.value = 4;
        k.dispatchEvent(new Event('input')); k.dispatchEvent(new Event('change'));""")
    wait(browser, lambda d: overlay_ready(d, "4"), "the 4 sampled points")
    assert_table_is_predict_py(browser, predict_py_rows(tmp_path / "k4", "--weights", weights, "--image", FRAME,
                                                        "--sample_k", "4"))
    assert "the 4 sampled gaze points of person1" in browser.find_element("id", "result-note").text
    screenshot = tmp_path / "web_demo.png"
    browser.save_screenshot(str(screenshot))
    with Image.open(screenshot) as shot:
        assert shot.size[0] >= 1000 and np.asarray(shot.convert("L")).std() > 10  # a page, not a blank
    if os.environ.get("WEB_DEMO_SCREENSHOT"):
        shutil.copyfile(screenshot, os.environ["WEB_DEMO_SCREENSHOT"])

    # A box drawn with the mouse on the editor becomes the next person (no detector score).
    editor = browser.find_element("id", "editor")
    width = editor.size["width"]
    scale = 1920 / width
    start, end = (int(60 / scale) - width // 2, int(700 / scale) - editor.size["height"] // 2), (40, 40)
    ActionChains(browser).move_to_element_with_offset(editor, *start).click_and_hold().move_by_offset(*end) \
        .release().perform()
    wait(browser, lambda d: len(page_rows(d)) == len(rows) + 1 and overlay_ready(d, "4"), "the drawn person")
    drawn = page_rows(browser)[-1]
    assert drawn["person"] == f"person{len(rows) + 1}" and drawn["head_score"] == ""
    box = [float(drawn[k]) for k in ("head_x_min", "head_y_min", "head_x_max", "head_y_max")]
    assert abs(box[0] - 60) < 2 * scale and abs(box[1] - 700) < 2 * scale
    assert abs(box[2] - box[0] - 40 * scale) < 2 * scale  # 40 screen pixels wide
    severe = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert not severe, severe  # no script error, no failed request


def test_a_file_that_is_not_an_image_gets_a_message_on_the_page(browser, server, tmp_path):
    browser.get(server.url)
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "the model")
    notes = tmp_path / "notes.txt"
    notes.write_text("a shopping list, not a picture\n")
    upload(browser, notes)
    message = wait(browser, lambda d: d.find_element("id", "message").is_displayed()
                   and d.find_element("id", "message"), "a message")
    assert message.text.startswith("notes.txt: not an image or a video this page can read")
    assert "Traceback" not in browser.page_source and not browser.find_element("id", "results").is_displayed()
    browser.get_log("browser")  # the failed upload's 400 is logged by Chromium as a failed request: expected here


def test_a_video_is_predicted_with_a_progress_bar_and_played(browser, server, tmp_path):
    from tests.test_predict import write_demo_mp4

    clip = tmp_path / "clip.mp4"
    write_demo_mp4(clip, size=(640, 360), frames=["00002575.jpg", "00002580.jpg", "00002585.jpg"])
    browser.get(server.url)
    wait(browser, lambda d: d.execute_script("return document.body.dataset.ready === 'true'"), "the model")
    upload(browser, clip)
    wait(browser, lambda d: d.find_element("id", "video-tools").is_displayed(), "the video's first frame")
    assert "clip.mp4: 640 x 360, 3 frames, 5.00 frames/s" in browser.find_element("id", "video-info").text
    browser.find_element("id", "predict").click()
    wait(browser, lambda d: d.find_element("id", "animation").is_displayed() and d.execute_script(
        "return document.getElementById('animation').readyState >= 1"), "the annotated video")
    progress = browser.execute_script("const p = document.getElementById('progress'); return [p.value, p.max];")
    assert progress == [3, 3] and browser.find_element("id", "progress-text").text == "predict: 3 / 3 frames"
    rows = predict_py_rows(tmp_path / "predict", "--weights", server.demo.predictor.weights, "--video", clip)
    assert_table_is_predict_py(browser, rows)
    assert browser.execute_script("return document.getElementById('animation').videoWidth") == 640  # it decodes
