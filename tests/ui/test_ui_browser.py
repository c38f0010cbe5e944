"""``rvrt ui`` end to end in a real browser: Debian's Chromium, driven by Playwright, against the
server started as a user starts it. Upload a tiny clip and the tiny model's weights, preview one
frame, restore the clip, download the result and check it; keep a screenshot.

Playwright's own browser download is never used (``executable_path`` names Debian's chromium,
which ``.ci/run`` installs). Without chromium or playwright the test skips, except under
``CI=true``, where it fails: CI must not pass by skipping it.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

from media import make_video, smooth_frames
from rvrt import zoo

CHROMIUM = Path("/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
        "--disable-component-update", "--no-first-run"]  # fmt: skip
#: where the screenshot of the last run stays (the test's own copy is in its tmp_path)
SCREENSHOT_ENV = "RVRT_UI_SCREENSHOT"


def _need_browser():
    missing = None
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing = "the python package playwright is not installed (pip install -e '.[test]')"
    if missing is None and not CHROMIUM.exists():
        missing = f"{CHROMIUM} is missing (apt-get install chromium)"
    if missing is not None:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must run the browser test: {missing}")
        pytest.skip(missing)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"rvrt ui exited with {proc.returncode}: {log.read_text()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"rvrt ui did not listen on port {port} within {timeout} s")


@pytest.fixture
def server(tmp_path):
    port = _free_port()
    # one PyTorch thread, as in the test process (tests/conftest.py): the tiny model runs faster so, and
    # the browser gets the other core
    env = dict(os.environ, OMP_NUM_THREADS="1")
    log = open(tmp_path / "rvrt-ui.log", "w")  # not a pipe: a full pipe would block the server
    proc = subprocess.Popen([sys.executable, "-m", "rvrt", "ui", "--port", str(port)], env=env,
                            stdout=log, stderr=subprocess.STDOUT, text=True)  # fmt: skip
    try:
        _wait_for_port(port, proc, tmp_path / "rvrt-ui.log")
        yield f"http://127.0.0.1:{port}/", proc
        print((tmp_path / "rvrt-ui.log").read_text())  # shown when the test fails
    finally:
        log.close()
        proc.terminate()
        try:
            proc.wait(30)
        finally:
            proc.kill()


def _not_blank(png: Path) -> None:
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with Image.open(png) as im:
        pixels = np.asarray(im.convert("RGB"))
    assert pixels.shape[0] > 300 and pixels.shape[1] > 600
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 50, "the screenshot is (nearly) one colour"


def test_upload_preview_run_download_in_chromium(server, tiny_sr_weights, tmp_path):
    _need_browser()
    from playwright.sync_api import expect, sync_playwright

    url, proc = server
    clip = make_video(tmp_path / "clip.mp4", smooth_frames(6, 32, 24))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        try:
            page = browser.new_page(accept_downloads=True, viewport={"width": 1000, "height": 1250})
            page.goto(url)
            expect(page.locator("#model option")).not_to_have_count(0)
            assert page.locator("#model").input_value() == zoo.DEFAULT_MODEL  # the default model, preselected

            broken = tmp_path / "broken.mp4"
            broken.write_bytes(b"\0" * 4096)
            page.set_input_files("#file", str(broken))  # an error is one line on the page
            expect(page.locator("#error")).to_contain_text("broken.mp4")
            assert "\n" not in page.locator("#error").inner_text()

            folder = tmp_path / "frames"
            folder.mkdir()
            for i, f in enumerate(smooth_frames(3, 20, 16)):
                Image.fromarray(f).save(folder / f"f{i + 1}.png")
            page.set_input_files("#folder", str(folder))  # a folder of frames, sent frame by frame
            expect(page.locator("#input-info")).to_have_text("folder: 3 frames of 20x16")
            assert page.locator("#format").input_value() == "zip"  # frames in, frames out

            page.set_input_files("#file", str(clip))
            expect(page.locator("#input-info")).to_have_text("clip.mp4: video, 32x24, 6 frames, 29.970 fps")
            page.set_input_files("#weights", str(tiny_sr_weights))
            expect(page.locator("#use-weights-label")).to_be_visible()
            page.select_option("#model", "")  # the model the weights file names
            expect(page.locator("#model-info")).to_contain_text("the model tiny_sr.safetensors describes")

            page.fill("#frame", "2")
            page.click("#preview")
            expect(page.locator("#preview-box")).to_be_visible(timeout=30_000)
            expect(page.locator("#preview-info")).to_contain_text("frame 2, 128x96, restored with frames 1..3")
            for img in ("#after", "#before"):
                page.wait_for_function(f"document.querySelector('{img}').naturalWidth === 128")
            page.fill("#wipe", "35")
            clip_path = page.eval_on_selector("#before", "e => e.style.clipPath")
            assert clip_path == "inset(0px 65% 0px 0px)", clip_path

            page.check("#side")
            assert page.get_attribute("#compare", "class") == "side"
            page.uncheck("#side")

            page.select_option("#format", "mp4")
            page.click("#run")
            expect(page.locator("#download")).to_be_visible(timeout=30_000)
            expect(page.locator("#summary")).to_contain_text("6 frames")
            expect(page.locator("#progress")).to_contain_text("run done")
            assert page.locator("#bar").evaluate("e => e.value") == 1
            with page.expect_download() as info:
                page.click("#download")
            result = tmp_path / info.value.suggested_filename
            info.value.save_as(result)
            shot = tmp_path / "ui.png"
            page.screenshot(path=str(shot), full_page=True)
            assert page.locator("#error").inner_text() == ""
        finally:
            browser.close()

    assert result.name == "clip_rvrt.mp4"
    with av.open(str(result)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    assert len(frames) == 6 and frames[0].shape == (96, 128, 3)
    _not_blank(shot)
    if os.environ.get(SCREENSHOT_ENV):
        Path(os.environ[SCREENSHOT_ENV]).write_bytes(shot.read_bytes())
    assert proc.poll() is None, "the server stopped during the test"
