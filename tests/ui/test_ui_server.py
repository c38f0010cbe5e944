"""The server of ``rvrt ui`` through its HTTP API (no browser): uploads and their limits, names that
reach outside the work folder, one job at a time, cancelling, errors as one line, requests from
other sites, and real previews and runs with the tiny model; plus the runner's progress callback."""

from __future__ import annotations

import http.client
import io
import json
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path

import av
import numpy as np
import pytest
from PIL import Image

import rvrt
from media import make_video, smooth_frames
from rvrt import zoo
from rvrt.ui import UIApp, make_server


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", smooth_frames(5, 32, 24))


class Client:
    def __init__(self, server) -> None:
        self.server = server
        self.port = server.port

    def call(self, method: str, path: str, body: bytes | str | None = None, headers: dict | None = None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        h = {"X-RVRT-UI": "1"} if method == "POST" else {}
        h.update(headers or {})
        try:
            conn.request(method, path, body=body, headers=h)
            r = conn.getresponse()
            data = r.read()
        finally:
            conn.close()
        if r.getheader("Content-Type", "").startswith("application/json"):
            return r.status, json.loads(data)
        return r.status, data

    def post(self, path: str, value: dict | None = None):
        return self.call("POST", path, json.dumps(value or {}))

    def upload(self, kind: str, name: str, data: bytes, **extra):
        from urllib.parse import urlencode

        return self.call("POST", "/api/upload?" + urlencode(dict(kind=kind, name=name, **extra)), data)

    def status(self) -> dict:
        return self.call("GET", "/api/status")[1]

    def wait(self, timeout: float = 60) -> dict:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            job = self.status()["job"]
            if job["state"] != "running":
                return job
            time.sleep(0.05)
        raise AssertionError("the job did not end")


@pytest.fixture
def ui(tmp_path):
    app = UIApp(tmp_path / "work", max_upload_bytes=1 << 20)
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    yield Client(server)
    server.shutdown()
    server.server_close()
    app.close()


def one_line_error(answer) -> str:
    status, body = answer
    assert 400 <= status < 500, answer
    assert set(body) == {"error"} and "\n" not in body["error"] and body["error"], body
    return body["error"]


def _png(size=(32, 24), value=0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((size[1], size[0], 3), value, np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def _outside_files(root: Path) -> set[str]:
    return {p.name for p in root.iterdir()}


# --- the page and what it lists ------------------------------------------------------------------


def test_page_and_models(ui):
    status, page = ui.call("GET", "/")
    assert status == 200 and b"<title>rvrt" in page and b"/api/upload" in page
    assert b"http://" not in page.replace(b"http://127.0.0.1", b"") and b"https://" not in page  # nothing fetched
    status, models = ui.call("GET", "/api/models")
    names = [m["name"] for m in models["models"]]
    assert names[0] == zoo.DEFAULT_MODEL and models["models"][0]["default"] and models["default"] == zoo.DEFAULT_MODEL
    assert set(names) == {n for n in rvrt.list_models() if zoo.get_spec(n).task != "vfi"}
    assert models["models"][0]["weights"] == "built in"
    assert set(models["formats"]) == {"mp4", "mkv", "zip"}
    assert ui.call("GET", "/nothing")[0] == 404


# --- uploads: limits and names -------------------------------------------------------------------


def test_upload_over_the_limit_is_refused_unread(ui, tmp_path):
    # the headers alone announce 2 MB: the answer comes before any body is sent, and nothing is kept
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    conn.putrequest("POST", "/api/upload?kind=input&name=big.mp4")
    conn.putheader("X-RVRT-UI", "1")
    conn.putheader("Content-Length", str(2 << 20))
    conn.endheaders()
    r = conn.getresponse()
    body = json.loads(r.read())
    conn.close()
    assert r.status == 413 and "upload too large: 2.0 MB; the limit is 1.0 MB" in body["error"]
    assert not list((tmp_path / "work").rglob("big.mp4"))


def test_refused_uploads_are_answered_after_their_body(tmp_path):
    # a refusal for another reason than size reads the body first: the client gets the answer, not a
    # reset connection in the middle of sending. 24 MB: more than loopback's socket buffers hold, so a
    # server that answered without reading would reset the connection every time
    app = UIApp(tmp_path / "work", max_upload_bytes=64 << 20)
    server = make_server("127.0.0.1", 0, app)
    thread = threading.Thread(target=server.serve_forever, kwargs=dict(poll_interval=0.05), daemon=True)
    thread.start()
    try:
        for _ in range(2):
            msg = one_line_error(Client(server).upload("weights", "../w.pth", b"x" * (24 << 20)))
            assert "refused weights file name '../w.pth'" in msg
    finally:
        server.shutdown()
        server.server_close()
        app.close()


def test_upload_without_length_is_refused(ui):
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    conn.putrequest("POST", "/api/upload?kind=input&name=a.mp4")
    conn.putheader("X-RVRT-UI", "1")
    conn.endheaders()
    r = conn.getresponse()
    assert r.status == 411 and "Content-Length" in json.loads(r.read())["error"]
    conn.close()


def test_frames_in_all_and_zips_unpacked_are_limited_too(ui):
    big = np.random.default_rng(0).integers(0, 255, (300, 400, 3), np.uint8)  # ~360 kB as PNG, incompressible
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, "PNG")
    frame = buf.getvalue()
    assert ui.upload("frame", "f1.png", frame, index=0, count=4)[0] == 200
    assert ui.upload("frame", "f2.png", frame, index=1, count=4)[0] == 200
    status, body = ui.upload("frame", "f3.png", frame, index=2, count=4)
    assert status == 413 and "too large" in one_line_error((status, body))
    bomb = _zip({"frame.png": b"\0" * (2 << 20)})  # a few kB that unpack to 2 MB
    assert len(bomb) < 100_000
    status, body = ui.upload("input", "bomb.zip", bomb)
    assert status == 413 and "unpacks to more than 1.0 MB" in one_line_error((status, body))


@pytest.mark.parametrize("name", ["../evil.mp4", "a/b.mp4", "..\\evil.mp4", "/etc/passwd", ".hidden.mp4",
                                  "C:evil.mp4", "..", "", "a\0b.mp4"])  # fmt: skip
@pytest.mark.parametrize("kind", ["input", "weights", "frame"])
def test_names_reaching_outside_are_refused(ui, tmp_path, name, kind):
    before = _outside_files(tmp_path)
    extra = dict(index=0, count=1) if kind == "frame" else {}
    answer = ui.upload(kind, name, b"data", **extra)
    msg = one_line_error(answer)
    assert answer[0] == 400 and ("refused" in msg or "plain file name" in msg or "missing ?name" in msg), msg
    assert _outside_files(tmp_path) == before
    assert not list(tmp_path.parent.glob("evil*")) and not (tmp_path / "work" / "evil.mp4").exists()


def test_zip_members_reaching_outside_are_refused(ui, tmp_path):
    for member in ["../evil.png", "frames/../../evil.png", "/abs/evil.png"]:
        msg = one_line_error(ui.upload("input", "frames.zip", _zip({"ok.png": _png(), member: _png()})))
        assert f"member {member!r} points outside the archive" in msg
    assert not list(tmp_path.rglob("evil.png"))
    assert ui.status()["input"] is None


def test_preview_files_are_only_the_preview(ui):
    for path in ["/api/preview/..%2F..%2Fetc%2Fpasswd", "/api/preview/../../etc/passwd", "/api/preview/x.png"]:
        assert ui.call("GET", path)[0] == 404
    assert ui.call("GET", "/api/result")[0] == 404


def test_zip_of_frames_becomes_the_input(ui):
    members = {f"clip/{i:03d}.png": _png(value=40 * i) for i in range(3)}
    members.update({"__MACOSX/clip/._000.png": b"junk", "clip/notes.txt": b"hi"})
    status, info = ui.upload("input", "clip.zip", _zip(members))
    assert status == 200 and info == dict(name="clip.zip", kind="frames", width=32, height=24, frames=3, fps=None)
    msg = one_line_error(ui.upload("input", "notes.zip", _zip({"a.txt": b"x"})))
    assert "holds no frames" in msg
    assert "is not a zip file" in one_line_error(ui.upload("input", "bad.zip", b"not a zip"))


def test_not_a_video_is_one_line(ui):
    msg = one_line_error(ui.upload("input", "clip.mp4", b"\0" * 1000))
    assert "clip.mp4" in msg


# --- requests from elsewhere -----------------------------------------------------------------------


def test_posts_need_the_page_header_and_a_local_host(ui, clip):
    status, body = ui.call("POST", "/api/upload?kind=input&name=clip.mp4", clip.read_bytes(), {"X-RVRT-UI": "0"})
    assert status == 403 and "rvrt ui page" in body["error"]
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    conn.request("POST", "/api/run", body="{}", headers={"X-RVRT-UI": "1", "Host": f"evil.example:{ui.port}"})
    r = conn.getresponse()
    assert r.status == 403 and "Host" in json.loads(r.read())["error"]
    conn.close()
    conn = http.client.HTTPConnection("127.0.0.1", ui.port, timeout=10)
    conn.request("GET", "/api/status", headers={"Host": "rebind.example"})
    assert conn.getresponse().status == 403
    conn.close()
    assert ui.status()["input"] is None


# --- jobs --------------------------------------------------------------------------------------------


def test_jobs_need_an_input_and_known_options(ui, clip):
    assert "no input yet" in one_line_error(ui.post("/api/run"))
    assert ui.upload("input", "clip.mp4", clip.read_bytes())[0] == 200
    msg = one_line_error(ui.post("/api/run", {"model": "rvrt.nope"}))
    assert "unknown model 'rvrt.nope'; known models:" in msg
    assert "no weights file uploaded" in one_line_error(ui.post("/api/run", {"use_weights": True}))
    assert "output format must be one of" in one_line_error(ui.post("/api/run", {"format": "avi"}))
    assert "preview frame must be" in one_line_error(ui.post("/api/preview", {"frame": 5}))
    assert "nothing is running" in one_line_error(ui.post("/api/cancel"))
    assert "not JSON" in one_line_error(ui.call("POST", "/api/run", "{oops"))


def test_one_job_at_a_time_and_cancel(ui, clip, monkeypatch):
    """A job that waits: a second job and uploads get 409 while it runs; cancel stops it at its next
    progress report, through the runner's progress callback."""
    go = threading.Event()
    calls = []

    def slow_restore(input, output, **kw):
        calls.append(kw)
        kw["progress"]("restore", 0.0, 5)
        go.wait(30)
        kw["progress"]("restore", 1.0, 5)  # raises: cancelled
        raise AssertionError("not cancelled")

    monkeypatch.setattr(rvrt, "restore", slow_restore)
    assert ui.upload("input", "clip.mp4", clip.read_bytes())[0] == 200
    status, job = ui.post("/api/run", {})
    assert status == 200 and job["state"] == "running"
    for answer in (ui.post("/api/run"), ui.post("/api/preview", {"frame": 1}),
                   ui.upload("input", "clip.mp4", clip.read_bytes()), ui.upload("weights", "w.pth", b"x")):  # fmt: skip
        assert answer[0] == 409 and "a run is running" in one_line_error(answer)
    assert ui.status()["job"]["total"] == 5
    assert ui.post("/api/cancel")[0] == 200
    go.set()
    assert ui.wait()["state"] == "cancelled"
    assert calls[0]["device"] == "auto" and calls[0]["overwrite"] is True
    assert ui.status()["result"] is None


def test_a_failing_job_is_one_line(ui, clip):
    assert ui.upload("input", "clip.mp4", clip.read_bytes())[0] == 200
    assert ui.upload("weights", "broken.safetensors", b"not weights")[0] == 200
    assert ui.post("/api/preview", {"model": "", "use_weights": True, "frame": 0})[0] == 200
    job = ui.wait()
    assert job["state"] == "error" and "\n" not in job["error"] and "broken.safetensors" in job["error"]


def _frames_of(path: Path) -> tuple[int, tuple[int, int]]:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return len(frames), frames[0].shape[:2]


def test_preview_then_run_with_the_tiny_model(ui, clip, tiny_sr_weights):
    assert ui.upload("input", "clip.mp4", clip.read_bytes())[0] == 200
    weights = tiny_sr_weights.read_bytes()
    ui.server.app.max_upload_bytes = 64 << 20
    assert ui.upload("weights", tiny_sr_weights.name, weights) == (200, {"weights": tiny_sr_weights.name})
    assert ui.post("/api/preview", {"model": "", "use_weights": True, "frame": 4})[0] == 200
    job = ui.wait()
    assert job["state"] == "done", job
    preview = ui.status()["preview"]
    assert preview["frame"] == 4 and preview["window"] == [2, 4] and preview["size"] == [128, 96]
    for key in ("before", "after"):
        status, png = ui.call("GET", f"/api/preview/{preview[key]}")
        assert status == 200 and Image.open(io.BytesIO(png)).size == (128, 96)
    # the preview is the runner's frame 4 of that window, exactly
    ref = rvrt.restore(clip, ui.server.app.root / "ref", weights=str(tiny_sr_weights), start=2, frames=3,
                       bit_depth=8, scene_cuts="off", progress=False)  # fmt: skip
    after = np.asarray(Image.open(io.BytesIO(ui.call("GET", f"/api/preview/{preview['after']}")[1])))
    assert np.array_equal(after, np.asarray(Image.open(sorted(Path(ref.output).glob("*.png"))[-1])))

    assert ui.post("/api/run", {"model": "", "use_weights": True, "format": "mkv"})[0] == 200
    job = ui.wait()
    assert job["state"] == "done" and job["stage"] == "restore" and job["done"] == job["total"] == 5, job
    result = ui.status()["result"]
    assert result["name"] == "clip_rvrt.mkv" and result["frames"] == 5 and "5 frames" in result["summary"]
    status, data = ui.call("GET", "/api/result")
    out = Path(ui.server.app.root / "downloaded.mkv")
    out.write_bytes(data)
    assert status == 200 and len(data) == result["size"]
    assert _frames_of(out) == (5, (96, 128))


def test_frames_folder_to_zip(ui, tiny_sr_weights):
    ui.server.app.max_upload_bytes = 10 << 20
    frames = smooth_frames(3, 20, 16)
    for i, f in enumerate(frames):
        buf = io.BytesIO()
        Image.fromarray(f).save(buf, "PNG")
        answer = ui.upload("frame", f"im{i + 1}.png", buf.getvalue(), index=i, count=3)
        assert answer[0] == 200
    assert answer[1] == dict(name="folder", kind="frames", width=20, height=16, frames=3, fps=None)
    assert ui.upload("weights", "tiny.safetensors", tiny_sr_weights.read_bytes())[0] == 200
    assert ui.post("/api/run", {"use_weights": True})[0] == 200  # frames in: PNG frames out, zipped
    assert ui.wait()["state"] == "done"
    status, data = ui.call("GET", "/api/result")
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        names = z.namelist()
        assert names == ["frames_rvrt/im1.png", "frames_rvrt/im2.png", "frames_rvrt/im3.png"]
        assert Image.open(z.open(names[0])).size == (80, 64)


def test_cancel_stops_the_real_runner_and_the_next_run_works(ui, tiny_sr_weights, monkeypatch, tmp_path):
    clip = make_video(tmp_path / "long.mp4", smooth_frames(8, 32, 24))
    ui.server.app.max_upload_bytes = 64 << 20
    assert ui.upload("input", "long.mp4", clip.read_bytes())[0] == 200
    assert ui.upload("weights", "tiny.safetensors", tiny_sr_weights.read_bytes())[0] == 200
    app = ui.server.app
    reporter = app._reporter

    def cancel_after_two_frames(job):  # Cancel pressed once two frames are done, whatever the speed
        report = reporter(job)

        def wrapped(stage, done, total):
            if done >= 2:
                job.cancel = True
            report(stage, done, total)

        return wrapped

    monkeypatch.setattr(app, "_reporter", cancel_after_two_frames)
    assert ui.post("/api/run", {"use_weights": True, "format": "mp4"})[0] == 200
    job = ui.wait()
    assert job["state"] == "cancelled" and 0 < job["done"] < 8 and ui.status()["result"] is None
    monkeypatch.setattr(app, "_reporter", reporter)
    assert ui.post("/api/run", {"use_weights": True, "format": "mp4"})[0] == 200  # nothing left claimed
    assert ui.wait()["state"] == "done" and ui.status()["result"]["frames"] == 8


# --- the runner's progress callback ------------------------------------------------------------------


def test_restore_reports_progress_to_a_callback_and_stops_when_it_raises(clip, tiny_sr_weights, tmp_path):
    seen = []
    summary = rvrt.restore(clip, tmp_path / "out", weights=str(tiny_sr_weights), scene_cuts="off",
                           progress=lambda *a: seen.append(a))  # fmt: skip
    assert summary.frames == 5
    done = [d for what, d, total in seen if what == "restore"]
    assert {t for _, _, t in seen} == {5} and done == sorted(done) and done[-1] == 5.0 and len(done) > 5
    assert any(d != int(d) for d in done)  # it moves inside a window, not only per frame

    class Stop(KeyboardInterrupt):
        pass

    def stop(what, done, total):
        if done >= 2:
            raise Stop()

    with pytest.raises(KeyboardInterrupt):
        rvrt.restore(clip, tmp_path / "stopped", weights=str(tiny_sr_weights), scene_cuts="off", progress=stop)
    with pytest.raises(rvrt.errors.InputError, match="progress"):
        rvrt.restore(clip, tmp_path / "x", weights=str(tiny_sr_weights), progress="yes")


# --- the command ---------------------------------------------------------------------------------------


def test_cli_warns_off_loopback_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen([sys.executable, "-m", "rvrt", "ui", "--host", "0.0.0.0", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        line = proc.stdout.readline()
        assert line.startswith("rvrt ui: serving http://0.0.0.0:"), line
        proc.terminate()
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    warning = [x for x in err.splitlines() if "warning" in x]
    assert len(warning) == 1 and "0.0.0.0 is not a loopback address" in warning[0] and "no login" in warning[0]
    assert proc.returncode == 0 and "stopped" in err
    bad = subprocess.run([sys.executable, "-m", "rvrt", "ui", "--port", "70000"], capture_output=True, text=True)
    assert bad.returncode == 2 and bad.stderr.count("\n") == 1 and "--port must be 0..65535" in bad.stderr
