"""y4m on stdin and stdout (``rvrt restore - -o OUT``, ``-o -``): the stream format, its colours
and depths against FFmpeg's own y4m demuxer, and the commands through real pipes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from rvrt.cli import main
from rvrt.errors import InputError, OutputError
from rvrt.media import open_reader, pipes, probe
from rvrt.media.images import read_image
from rvrt.media.pipes import PipeReader, PipeWriter, Y4MStream, parse_header, probe_pipe

SRC = Path(__file__).resolve().parents[2] / "src"
H, W = 8, 12  # tiny frames: the x4 model makes 32x48


def make_y4m(path: Path, pix_fmt: str, n: int = 3, *, color_range: int | None = None, h: int = H, w: int = W) -> Path:
    """A y4m file as FFmpeg's muxer writes it (smooth colour ramps, distinct frames)."""
    out = av.open(str(path), "w", format="yuv4mpegpipe", options={"strict": "-1"})
    s = out.add_stream("wrapped_avframe", rate=Fraction(30000, 1001))
    s.width, s.height, s.pix_fmt = w, h, pix_fmt
    if color_range:
        s.codec_context.color_range = color_range
    yy, xx = np.mgrid[0:h, 0:w]
    for i in range(n):
        rgb = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), np.full_like(xx, 60 + 50 * i)], -1)
        f = av.VideoFrame.from_ndarray(rgb.astype(np.uint8), format="rgb24").reformat(format=pix_fmt)
        if color_range:
            f.color_range = color_range
        f.pts = i
        for p in s.encode(f):
            out.mux(p)
    for p in s.encode(None):
        out.mux(p)
    out.close()
    return path


def y4m_frames(data: bytes) -> tuple[av.VideoStream, list[av.VideoFrame]]:
    """A y4m stream's frames, decoded by FFmpeg (PyAV)."""
    with av.open(io.BytesIO(data), format="yuv4mpegpipe") as c:
        stream = c.streams.video[0]
        frames = list(c.decode(stream))
        return stream, frames


# ---- the header ------------------------------------------------------------------------------


def test_header_as_ffmpeg_and_vspipe_write_it():
    h = parse_header(b"YUV4MPEG2 W1920 H1080 F24000:1001 Ip A1:1 C420p10 XYSCSS=420P10 XCOLORRANGE=FULL")
    assert (h.width, h.height, h.fps, h.pix_fmt, h.range) == (1920, 1080, Fraction(24000, 1001), "yuv420p10le", "pc")
    assert h.frame_bytes == 1920 * 1080 * 3  # 1.5 samples a pixel, 2 bytes each
    h = parse_header(b"YUV4MPEG2 C444 W4 H2 F25:1 Ip A0:0 XLENGTH=100")  # vspipe: C first, a length
    assert (h.pix_fmt, h.range, h.frame_bytes) == ("yuv444p", None, 24)
    assert parse_header(b"YUV4MPEG2 W4 H2 F25:1 XYSCSS=420MPEG2").pix_fmt == "yuv420p"  # no C: XYSCSS
    assert parse_header(b"YUV4MPEG2 W4 H2 F25:1 C420jpeg XCOLORRANGE=LIMITED").range == "tv"
    assert parse_header(b"YUV4MPEG2 W5 H3 Cmono").frame_bytes == 15
    assert parse_header(b"YUV4MPEG2 W5 H3 Cmono16").pix_fmt == "gray16le"  # as ffmpeg writes deep gray


@pytest.mark.parametrize(
    "header, message",
    [
        (b"RIFF....WAVEfmt ", "is not a YUV4MPEG2 (y4m) stream"),
        (b"YUV4MPEG2 W16 F25:1 C420jpeg", "no valid size"),
        (b"YUV4MPEG2 W16 H8 F25:1 C411 XYSCSS=411", "C411 is not supported"),
        (b"YUV4MPEG2 W16 H8 F25:1 C444alpha", "C444alpha is not supported"),
        (b"YUV4MPEG2 W16 H8 F25:0 C420", None),  # no frame rate: allowed (25 fps is written)
        (b"YUV4MPEG2 W16 H8 Fx C420", "is not N:D"),
        (b"YUV4MPEG2 W16 H8 C420 XCOLORRANGE=HALF", "neither FULL nor LIMITED"),
    ],
)
def test_bad_headers_are_one_clear_error(header, message):
    if message is None:
        assert parse_header(header).fps is None
        return
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_header(header)


def test_a_stream_is_read_once_and_a_torn_frame_is_damage():
    header = b"YUV4MPEG2 W4 H2 F25:1 C444\n"
    one = b"FRAME\n" + bytes(range(24))
    s = Y4MStream(io.BytesIO(header + one + one[:10]))
    with pytest.raises(InputError, match="ended inside frame 1 .4 of 24 bytes."):
        list(s.frames())
    with pytest.raises(InputError, match="can be read only once"):
        list(s.frames())
    s = Y4MStream(io.BytesIO(header + one + one[:10]))
    assert len(list(s.frames(on_damage="stop"))) == 1 and s.damaged[0] == 1
    with pytest.raises(InputError, match="is empty"):
        Y4MStream(io.BytesIO(b""))
    with pytest.raises(InputError, match="does not start with FRAME"):
        list(Y4MStream(io.BytesIO(header + b"FRAMX\n" + bytes(24))).frames())


# ---- colours and depths, against FFmpeg's y4m demuxer ------------------------------------------


@pytest.mark.parametrize(
    "pix_fmt, color_range, depth",
    [
        ("yuv420p", None, 8),
        ("yuv420p10le", 2, 16),
        ("yuv444p", 1, 8),
        ("yuv444p10le", None, 16),
        ("gray", None, 8),
        ("yuv422p12le", None, 16),
    ],  # fmt: skip
)
def test_the_pipe_reads_what_the_video_reader_reads_from_the_same_file(tmp_path, pix_fmt, color_range, depth):
    path = make_y4m(tmp_path / "in.y4m", pix_fmt, color_range=color_range)
    as_file = probe(path)  # FFmpeg's demuxer, through rvrt's video reader
    with path.open("rb") as f:
        info = probe_pipe(Y4MStream(f, "in"))
    with path.open("rb") as f:
        stream = Y4MStream(f, "in")
        piped = [fr.data for fr in PipeReader(info, 0, stream)]
    with open_reader(path, info=as_file) as reader:
        expected = [fr.data for fr in reader]
    assert info.bit_depth == as_file.bit_depth == depth
    assert (info.width, info.height, info.fps, info.frame_count) == (W, H, Fraction(30000, 1001), None)
    assert info.color.get("range") == {None: None, 1: "tv", 2: "pc"}[color_range]
    assert len(piped) == len(expected) == 3
    for a, b in zip(piped, expected, strict=True):
        assert a.dtype == b.dtype and np.array_equal(a, b)


@pytest.mark.parametrize(
    "source, bit_depth, pix_fmt, tags",
    [
        ("yuv420p", 8, "yuv420p", b"C420jpeg XYSCSS=420JPEG XCOLORRANGE=LIMITED"),
        ("yuv444p10le", 16, "yuv444p10le", b"C444p10 XYSCSS=444P10 XCOLORRANGE=FULL"),
        ("yuv420p10le", 8, "yuv420p", b"C420jpeg XYSCSS=420JPEG XCOLORRANGE=FULL"),
        ("yuv444p", 16, "yuv444p10le", b"C444p10 XYSCSS=444P10 XCOLORRANGE=LIMITED"),
    ],
)
def test_the_writer_matches_the_input_and_ffmpeg_reads_it_back(tmp_path, source, bit_depth, pix_fmt, tags):
    color_range = 2 if "10" in source and tags.endswith(b"FULL") else None
    path = make_y4m(tmp_path / "in.y4m", source, color_range=color_range)
    info = probe(path)
    if color_range is None:
        assert "range" not in info.color or info.color["range"] == "tv"
    with open_reader(path, info=info) as reader:
        frames = [fr.data for fr in reader]
    buf = io.BytesIO()
    w = PipeWriter(info, W, H, bit_depth=bit_depth, stream=buf)
    for f in frames:
        w.write(f if bit_depth == 16 or f.dtype == np.uint8 else (f.astype(np.uint32) * 255 // 65535).astype("u1"))
    w.close()
    data = buf.getvalue()
    assert data.split(b"\n", 1)[0].endswith(tags)
    stream, decoded = y4m_frames(data)
    assert stream.codec_context.format.name == pix_fmt and len(decoded) == 3
    assert (stream.width, stream.height, stream.average_rate) == (W, H, Fraction(30000, 1001))
    assert decoded[0].color_range == (2 if tags.endswith(b"FULL") else 1)
    back = tmp_path / "back.y4m"
    back.write_bytes(data)
    with open_reader(back) as reader:
        again = [fr.data for fr in reader]
    top = 65535 if bit_depth == 16 else 255
    for a, b in zip(frames, again, strict=True):
        a = a.astype(np.float64) / (65535 if a.dtype == np.uint16 else 255)
        err = np.abs(a - b.astype(np.float64) / top)
        # 4:2:0 blurs the chroma of the ramps a little; 4:4:4 is exact up to rounding
        assert err.mean() < (0.012 if "420" in pix_fmt else 0.004), err.mean()


class _Counting(io.BytesIO):
    """A stream that counts the bytes taken from it."""

    taken = 0

    def read(self, n=-1):
        data = super().read(n)
        self.taken += len(data)
        return data


def test_frames_are_read_as_they_are_asked_for(tmp_path):
    path = make_y4m(tmp_path / "in.y4m", "yuv420p", n=5)
    src = _Counting(path.read_bytes())
    stream = Y4MStream(src, "in")
    reader = PipeReader(probe_pipe(stream), 0, stream)
    frames = iter(reader)
    next(frames)
    frame = 6 + stream.header.frame_bytes
    assert src.taken == len(path.read_bytes().split(b"\n", 1)[0]) + 1 + frame  # the header and one frame
    next(frames)
    assert src.taken < len(path.read_bytes()) - 2 * frame


class _Closed(io.BytesIO):
    def write(self, data):
        if self.tell() > 100:
            raise BrokenPipeError(32, "Broken pipe")
        return super().write(data)


def test_a_reader_that_goes_away_is_one_clear_error(tmp_path):
    info = probe(make_y4m(tmp_path / "in.y4m", "yuv420p", n=1))
    w = PipeWriter(info, W, H, stream=_Closed())
    w.write(np.zeros((H, W, 3), np.uint8))
    with pytest.raises(OutputError, match="stdout was closed by the program reading it, after 1 frames"):
        w.write(np.zeros((H, W, 3), np.uint8))


def test_nothing_else_reaches_stdout_while_the_writer_writes(tmp_path):
    code = (
        "import numpy as np, sys; from rvrt.media import probe; from rvrt.media.pipes import PipeWriter\n"
        f"w = PipeWriter(probe({str(make_y4m(tmp_path / 'in.y4m', 'yuv420p', n=1))!r}), 4, 2)\n"
        "print('a stray print'); sys.stdout.flush()\n"
        "w.write(np.zeros((2, 4, 3), np.uint8)); w.close()\n"
        "print('after close')\n"
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    header = b"YUV4MPEG2 W4 H2 F30000:1001 Ip A1:1 C420jpeg XYSCSS=420JPEG XCOLORRANGE=LIMITED\n"
    assert r.stdout == header + b"FRAME\n" + bytes([16] * 8 + [128] * 4) + b"after close\n"
    assert "a stray print" in r.stderr.decode()


# ---- through real pipes ------------------------------------------------------------------------


def _rvrt(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "rvrt", *args], input=stdin, capture_output=True, env=env,
                          timeout=120)  # fmt: skip


def test_restore_from_stdin_to_a_video(tiny_sr_weights, tmp_path, capsys, fake_stdin):
    # in this process (stdin replaced); the runs below go through real pipes
    fake_stdin(make_y4m(tmp_path / "in.y4m", "yuv420p").read_bytes())
    out = tmp_path / "out.mkv"
    assert main(["restore", "-", "-o", str(out), "--weights", str(tiny_sr_weights), "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "rvrt restore: 3 frames at 30000/1001 (= 29.970) fps" in err and f"-> {out}" in err
    assert "frames [" in err and "%|" not in err  # progress without a total: frames and rate, no ETA
    assert "scene cut" not in err  # no detection ahead of the run on stdin
    info = probe(out)
    assert (info.width, info.height, info.fps) == (4 * W, 4 * H, Fraction(30000, 1001))
    with open_reader(out) as reader:
        assert sum(1 for _ in reader) == 3
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no claim, log or segments left


def test_restore_to_stdout_equals_the_same_run_into_frames(tiny_sr_weights, tmp_path, capsys):
    source = make_y4m(tmp_path / "in.y4m", "yuv444p10le", color_range=2)
    r = _rvrt(["restore", "-", "-o", "-", "--weights", str(tiny_sr_weights), "--device", "cpu"], source.read_bytes())
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert (
        r.stdout.startswith(b"YUV4MPEG2 W48 H32 F30000:1001 ")
        and b"C444p10 XYSCSS=444P10 XCOLORRANGE=FULL\n" in (r.stdout[:100])
    )
    assert "-> stdout" in err
    stream, decoded = y4m_frames(r.stdout)
    assert len(decoded) == 3 and stream.codec_context.format.name == "yuv444p10le"
    assert len(r.stdout) == len(r.stdout.split(b"\n", 1)[0]) + 1 + 3 * (6 + 48 * 32 * 3 * 2)  # nothing else
    # the same input as a file, restored in this process into 16-bit PNG frames
    assert main(["restore", str(source), "-o", str(tmp_path / "ref"), "--weights", str(tiny_sr_weights),
                 "--device", "cpu", "-q"]) == 0  # fmt: skip
    refs = sorted((tmp_path / "ref").glob("*.png"))
    piped = tmp_path / "piped.y4m"
    piped.write_bytes(r.stdout)
    with open_reader(piped) as reader:
        for ref, got in zip(refs, reader, strict=True):
            want = read_image(ref)[0].astype(np.float64) / 65535
            diff = (got.data.astype(np.float64) / 65535 - want) * 1023
            # the rounding of the pipe's 10-bit YUV, and nothing more (a wrong range, matrix or scale errs by
            # tens of levels); swscale's full-range 10-bit round trip is biased by under a level per channel
            # (R and B down, G up), as for a video file
            assert np.abs(diff).max() < 4 and np.abs(diff).mean() < 1.2 and abs(diff.mean()) < 0.6, diff


def test_a_reader_that_closes_stdout_early_stops_the_run_in_one_line(tiny_sr_weights, tmp_path):
    source = make_y4m(tmp_path / "in.y4m", "yuv420p", n=2)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    args = ["restore", str(source), "-o", "-", "--weights", str(tiny_sr_weights), "--device", "cpu", "-q"]
    p = subprocess.Popen([sys.executable, "-m", "rvrt", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    assert p.stdout.read(10) == b"YUV4MPEG2 "  # the header comes before any frame is computed
    p.stdout.close()  # as `| head -c 10` does
    err = p.stderr.read().decode()
    assert p.wait(timeout=120) == 2, err
    assert err.strip() == "rvrt restore: error: stdout was closed by the program reading it, after 0 frames"


def test_interpolate_from_stdin_to_stdout(tiny_vrt, tmp_path):
    cfg, weights = tiny_vrt["vfi"]
    source = make_y4m(tmp_path / "in.y4m", "yuv420p")
    r = _rvrt(["interpolate", "-", "-o", "-", "-m", str(cfg), "--weights", str(weights), "--device", "cpu"],
              source.read_bytes())  # fmt: skip
    err = r.stderr.decode()
    assert r.returncode == 0, err
    assert r.stdout.startswith(b"YUV4MPEG2 W12 H8 F60000:1001 ")
    stream, decoded = y4m_frames(r.stdout)
    assert len(decoded) == 6 and stream.average_rate == Fraction(60000, 1001)
    assert "rvrt interpolate: 6 frames at 60000/1001" in err


def test_restore_from_stdin_into_frames(tiny_sr_weights, tmp_path, capsys, fake_stdin):
    fake_stdin(make_y4m(tmp_path / "in.y4m", "yuv420p10le", n=2).read_bytes())
    out = tmp_path / "frames"
    assert main(["restore", "-", "-o", str(out), "--weights", str(tiny_sr_weights), "--device", "cpu"]) == 0
    assert "rvrt restore: 2 frames" in capsys.readouterr().err
    names = sorted(p.name for p in out.glob("*.png"))
    assert names == ["00000000.png", "00000001.png"]
    assert read_image(out / names[0])[0].dtype == np.uint16  # 10-bit in, 16-bit PNG out


# ---- refusals: one line, exit 2 ---------------------------------------------------------------


@pytest.fixture
def fake_stdin(monkeypatch):
    def use(data: bytes) -> None:
        monkeypatch.setattr(pipes, "_stdin", None)
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))

    return use


@pytest.mark.parametrize(
    "args, stdin, message",
    [
        (["-", "-o", "out.mkv", "--resume"], b"", "cannot continue a run that reads stdin or writes stdout"),
        (["IN", "-o", "-", "--resume"], None, "cannot continue a run that reads stdin or writes stdout"),
        (["-", "-o", "out.mkv", "--scene-cuts", "auto"], b"", "stdin can be read once"),
        (["IN", "IN", "-o", "-"], None, "takes one input and one output"),
        (["-", "-o", "out.mkv"], b"GIF89a\n", "stdin is not a YUV4MPEG2 (y4m) stream"),
        (["-", "-o", "out.mkv"], b"YUV4MPEG2 W8 H8 F25:1 C411 XYSCSS=411\n", "C411 is not supported"),
        (["-", "-o", "out.mkv"], b"", "stdin is empty"),
    ],
)
def test_refusals(tiny_sr_weights, tmp_path, capsys, fake_stdin, args, stdin, message):
    source = make_y4m(tmp_path / "in.y4m", "yuv420p", n=2)
    if stdin is not None:
        fake_stdin(stdin)
    args = [str(source) if a == "IN" else str(tmp_path / a) if a.endswith(".mkv") else a for a in args]
    assert main(["restore", *args, "--weights", str(tiny_sr_weights), "--device", "cpu", "-q"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and message in err, err
    assert not (tmp_path / "out.mkv").exists()


def test_an_interrupted_pipe_run_does_not_promise_a_resume(monkeypatch, capsys):
    from rvrt.inference import runner

    def interrupted(*args, **kwargs):
        raise runner.Interrupted("out.mkv", 3, "SIGINT", resumable=False)

    monkeypatch.setattr(runner, "run_job", interrupted)
    assert main(["restore", "-", "-o", "out.mkv", "-q"]) == 130
    err = capsys.readouterr().err
    assert err == "rvrt restore: interrupted (SIGINT) after 3 frames of out.mkv (a pipe cannot be resumed)\n"
