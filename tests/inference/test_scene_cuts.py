"""Scene cuts: detection on real footage (cuts found, no false cut on motion, fades or flashes),
cut lists, and shot-exact restoration (a joined clip restores exactly as its shots restored alone)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import rvrt
from media import REAL, REAL_MISSING, make_video
from rvrt.cli import main
from rvrt.data.frames import read_image
from rvrt.errors import InputError, OutputError
from rvrt.inference.jobs import restore_job
from rvrt.inference.outputs import LOG_NAME
from rvrt.inference.runner import Interrupted
from rvrt.media.images import write_png
from rvrt.media.scenes import CutDetector, detect_cuts, read_cut_list, shots_of
from rvrt.media.writers import _FramesWriter

CALENDAR = REAL / "YapengTian+TDAN-VSR-CVPR-2020" / "data" / "Vid4" / "calendar" / "LR_bicubic"
CITY = REAL / "jiangsutx+SPMC_VideoSR" / "data" / "test" / "city" / "input4"
DEMO = REAL / "ckkelvinchan+BasicVSR_PlusPlus" / "data" / "demo_000"
needs_data = pytest.mark.skipif(
    not (CALENDAR.is_dir() and CITY.is_dir() and DEMO.is_dir()),
    reason=REAL_MISSING,
)
TILE = dict(tile=(4, 0, 0), tile_overlap=(2, 0, 0))


def _clip(folder, n: int, h: int = 128, w: int = 160) -> list[np.ndarray]:
    return [read_image(p)[:h, :w] for p in sorted(folder.glob("*.png"))[:n]]


def _tensors(frames: list[np.ndarray]) -> list[torch.Tensor]:
    return [torch.from_numpy(f.copy()).permute(2, 0, 1).float() / 255 for f in frames]


@needs_data
def test_a_hard_cut_between_two_real_clips_is_found_where_it_is():
    a, b = _clip(CALENDAR, 12), _clip(CITY, 9)
    assert detect_cuts(a + b) == [12]
    assert detect_cuts(a + b + a[:5]) == [12, 21]
    assert detect_cuts(a + b, first=100) == [112]  # numbered like the frames given


@needs_data
@pytest.mark.parametrize("folder", [CALENDAR, CITY, DEMO], ids=["calendar", "city", "demo_000"])
def test_real_clips_have_no_false_cuts(folder):
    frames = _clip(folder, 1000, 10_000, 10_000)
    assert len(frames) >= 21
    assert detect_cuts(frames) == []
    fast = frames[::3] + frames[::-3]  # three times the motion, forth and back
    assert detect_cuts(fast) == []


@needs_data
def test_fades_and_flashes_are_not_cuts():
    a, b = _clip(CALENDAR, 12), _clip(CITY, 12)
    dissolve = [((1 - t) * a[i].astype(np.float64) + t * b[i]).round().astype(np.uint8)
                for i, t in enumerate(np.linspace(0, 1, 12))]  # fmt: skip
    black = [(f * (1 - t)).round().astype(np.uint8) for f, t in zip(a, np.linspace(0, 1, 12), strict=True)]
    flash = a[:6] + [np.full_like(a[0], 255)] + a[6:]
    for frames in (dissolve, black, flash):
        assert detect_cuts(frames) == []


def test_the_detector_decides_with_a_look_ahead_of_two_frames():
    rng = np.random.default_rng(0)
    a = [np.full((48, 64, 3), 40, np.uint8) + rng.integers(0, 3, (48, 64, 3), dtype=np.uint8) for _ in range(6)]
    b = [np.full((48, 64, 3), (200, 30, 90), np.uint8) + rng.integers(0, 3, (48, 64, 3), dtype=np.uint8)
         for _ in range(6)]  # fmt: skip
    det = CutDetector()
    found = [det.push(f) for f in a + b]
    assert found.index([6]) == 8  # frame 6 starts a shot: known once frame 8 is in
    assert det.finish() == [] and det.cuts == [6]


def test_cut_lists_plain_and_pyscenedetect(tmp_path):
    plain = tmp_path / "cuts.txt"
    plain.write_text("# shots\n120\n\n48  # the kitchen\n48\n")
    assert read_cut_list(plain) == [48, 120]
    csv = tmp_path / "video-Scenes.csv"
    csv.write_text(
        "Timecode List:,00:00:02.000,00:00:05.000\n"
        "Scene Number,Start Frame,Start Timecode,Start Time (seconds),End Frame,End Timecode,End Time (seconds),"
        "Length (frames),Length (timecode),Length (seconds)\n"
        "1,1,00:00:00.000,0.000,50,00:00:02.000,2.000,50,00:00:02.000,2.000\n"
        "2,51,00:00:02.000,2.000,125,00:00:05.000,5.000,75,00:00:03.000,3.000\n"
        "3,126,00:00:05.000,5.000,200,00:00:08.000,8.000,75,00:00:03.000,3.000\n"
    )
    assert read_cut_list(csv) == [50, 125]  # PySceneDetect numbers frames from 1
    bad = tmp_path / "bad.txt"
    for text, why in (("12\nfive\n", "line 2"), ("-3\n", "start at 0")):
        bad.write_text(text)
        with pytest.raises(InputError, match=why):
            read_cut_list(bad)
    with pytest.raises(InputError, match="does not exist"):
        read_cut_list(tmp_path / "missing.txt")
    assert shots_of([5, 0, 12, 30], 20) == [(0, 5), (5, 12), (12, 20)]
    assert shots_of([5], None) == [(0, 5), (5, None)]


@needs_data
def test_a_joined_clip_restores_exactly_as_its_shots_alone(tiny_sr_weights):
    a, b = _tensors(_clip(CALENDAR, 7, 40, 48)), _tensors(_clip(CITY, 6, 40, 48))
    opts = dict(weights=tiny_sr_weights, device="cpu", **TILE)

    def run(frames, **kw):
        return [f for _, f in rvrt.restore_iter(frames, **opts, **kw)]

    alone = run(a) + run(b)
    cut = run(a + b, scene_cuts=[7])
    assert all(torch.equal(x, y) for x, y in zip(cut, alone, strict=True))
    plain = run(a + b, scene_cuts="off")
    differ = [not torch.equal(x, y) for x, y in zip(plain, alone, strict=True)]
    assert differ[5:9] == [True] * 4 and not any(differ[:2])  # the windows across the cut mix the shots
    with pytest.raises(InputError, match="reads the input twice"):
        run(a + b, scene_cuts="auto")


@pytest.fixture(scope="module")
def joined_video(tmp_path_factory):
    if not (CALENDAR.is_dir() and CITY.is_dir()):
        pytest.skip(REAL_MISSING)
    frames = _clip(CALENDAR, 6, 40, 48) + _clip(CITY, 5, 40, 48)
    return make_video(tmp_path_factory.mktemp("joined") / "joined.mp4", frames, audio=True)


def _pngs(folder):
    return {p.name: p.read_bytes() for p in sorted(folder.glob("*.png"))}


def test_a_video_is_cut_automatically_and_each_shot_restored_alone(joined_video, tiny_sr_weights, tmp_path):
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False, **TILE)
    summary = rvrt.restore(joined_video, tmp_path / "auto", **opts)
    assert summary.cuts == [6] and "1 scene cut (frame 6)" in summary.line()
    header = json.loads((tmp_path / "auto" / LOG_NAME).read_text().splitlines()[0])
    assert header["plan"]["cuts"] == [6] and header["fingerprint"]["scene_cuts"] == "auto"
    # the shots restored as two separate ranges of the video: the same frames, byte for byte
    rvrt.restore(joined_video, tmp_path / "shot1", start=0, frames=6, **opts)
    rvrt.restore(joined_video, tmp_path / "shot2", start=6, **opts)
    assert _pngs(tmp_path / "auto") == {**_pngs(tmp_path / "shot1"), **_pngs(tmp_path / "shot2")}
    off = rvrt.restore(joined_video, tmp_path / "off", scene_cuts="off", **opts)
    assert off.cuts == [] and _pngs(tmp_path / "off") != _pngs(tmp_path / "auto")


def test_resume_with_cuts_is_exact_and_keeps_the_cuts(joined_video, tiny_sr_weights, tmp_path, monkeypatch):
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False, **TILE)
    rvrt.restore(joined_video, tmp_path / "full", **opts)
    expected = _pngs(tmp_path / "full")
    from rvrt.inference import runner

    for k in (2, 5, 6, 7, 9):
        out = tmp_path / f"cut{k}"
        with monkeypatch.context() as m:
            original = _FramesWriter.write

            def write(self, data, name=None, k=k, original=original):
                if self.written >= k:
                    raise KeyboardInterrupt
                return original(self, data, name)

            m.setattr(_FramesWriter, "write", write)
            with pytest.raises(Interrupted):
                rvrt.restore(joined_video, out, **opts)
        with monkeypatch.context() as m:  # the resumed run takes the cuts from the run log
            m.setattr(runner, "find_cuts", lambda *a, **kw: pytest.fail("cuts detected again on resume"))
            summary = rvrt.restore(joined_video, out, resume=True, **opts)
        assert summary.resumed_from == k and summary.cuts == [6]
        assert _pngs(out) == expected, k
    with pytest.raises(OutputError, match="scene_cuts"):
        rvrt.restore(joined_video, tmp_path / "cut2", resume=True, scene_cuts=[3], **opts)


def test_cut_list_file_on_the_command_line(joined_video, tiny_sr_weights, tmp_path, capsys):
    cuts = tmp_path / "cuts.txt"
    cuts.write_text("3\n")
    out = tmp_path / "out"
    args = ["restore", str(joined_video), "-o", str(out), "--weights", str(tiny_sr_weights), "--device", "cpu",
            "--tile", "4", "0", "0", "--tile-overlap", "2", "0", "0", "--scene-cuts", str(cuts)]  # fmt: skip
    assert main(args) == 0
    assert "1 scene cut (frame 3)" in capsys.readouterr().err
    cuts.write_text("3\nseven\n")
    assert main([*args[:-2], "--scene-cuts", str(cuts), "--overwrite"]) == 2
    assert "line 2" in capsys.readouterr().err


def test_frames_folders_are_not_cut_unless_asked(tiny_sr_weights, tmp_path):
    folder = tmp_path / "in"
    rng = np.random.default_rng(1)
    for i in range(6):
        base = np.full((24, 28, 3), (30, 30, 30) if i < 3 else (220, 90, 20), np.uint8)
        write_png(folder / f"{i:03d}.png", base + rng.integers(0, 4, (24, 28, 3), dtype=np.uint8))
    opts = dict(weights=tiny_sr_weights, device="cpu", progress=False, **TILE)
    assert rvrt.restore(folder, tmp_path / "default", **opts).cuts == []
    assert rvrt.restore(folder, tmp_path / "auto", scene_cuts="auto", **opts).cuts == [3]


def test_interpolation_holds_the_last_frame_of_a_shot_at_a_cut(tiny_vrt, tmp_path):
    cfg, weights = tiny_vrt["vfi"]
    rng = np.random.default_rng(2)
    frames = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(7)]
    src = [torch.from_numpy(f.copy()).permute(2, 0, 1).float() / 255 for f in frames]
    opts = dict(model=cfg, weights=weights, device="cpu")
    out = [f for _, f in rvrt.interpolate_iter(src, scene_cuts=[3, 6], **opts)]
    assert len(out) == 14
    for cut in (3, 6):
        assert torch.equal(out[2 * cut - 1], out[2 * cut - 2])  # the last frame of the shot, held
    first_shot = [f for _, f in rvrt.interpolate_iter(src[:3], **opts)]
    assert all(torch.equal(x, y) for x, y in zip(out[:6], first_shot, strict=True))
    last = [f for _, f in rvrt.interpolate_iter(src, scene_cuts=[6], hold_last=False, **opts)]
    assert len(last) == 13 and torch.equal(last[12], src[6])  # a one-frame last shot


def test_bad_scene_cut_values_are_one_clear_error():
    for bad, why in ((["x"], "integers"), ([-1], "integers"), (3.5, "must be"), ("", "must be")):
        with pytest.raises(InputError, match=why):
            restore_job(scene_cuts=bad)
    assert restore_job(scene_cuts=[9, 3, 3]).scene_cuts == (3, 9)


@needs_data
def test_eval_restores_each_shot_of_a_sequence_alone(tiny_sr_weights):
    from rvrt.cli.eval import build_restore_fn

    a, b = _tensors(_clip(CALENDAR, 5, 40, 48)), _tensors(_clip(CITY, 5, 40, 48))
    model = rvrt.load_model(tiny_sr_weights)
    kw = dict(tile=TILE["tile"], tile_overlap=TILE["tile_overlap"])
    plain = build_restore_fn(model, **kw)
    alone = torch.cat([plain(torch.stack(a)), plain(torch.stack(b))])
    joined = torch.stack(a + b)
    assert torch.equal(build_restore_fn(model, scene_cuts="auto", **kw)(joined), alone)
    assert torch.equal(build_restore_fn(model, scene_cuts=[5], **kw)(joined), alone)
    assert not torch.equal(plain(joined), alone)
