"""``rvrt restore`` end to end: video and frame folders in and out, resume, options, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import rvrt
from media import make_video, smooth_frames
from rvrt.checkpoint import save_safetensors
from rvrt.cli import main
from rvrt.media import probe
from rvrt.media.images import read_image, write_png

SR = dict(upscale=4, embed_dims=[12, 12, 12], num_heads=[2, 2, 2], attention_heads=2, deformable_groups=2)
DENOISE = dict(SR, upscale=1, nonblind_denoising=True, inputconv_groups=[1, 1, 1, 1, 1, 1])


def _weights(tmp: Path, kwargs: dict, name: str) -> Path:
    cfg = tmp / f"{name}.json"
    cfg.write_text(json.dumps(kwargs))
    torch.manual_seed(0)
    model = rvrt.create_model(cfg)
    for p in model.parameters():  # make the random network do something visible
        p.data.add_(torch.randn_like(p) * 0.01)
    out = tmp / f"{name}.safetensors"
    save_safetensors(model, out, arch="rvrt", config=model.config.to_kwargs(), name=f"rvrt:{name}")
    return out


@pytest.fixture(scope="module")
def sr_weights(tmp_path_factory) -> Path:
    return _weights(tmp_path_factory.mktemp("w"), SR, "tiny_sr")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return make_video(tmp_path_factory.mktemp("v") / "in.mp4", smooth_frames(5, 36, 34), audio=True)


def test_video_to_video_keeps_rate_audio_and_scales(clip, sr_weights, tmp_path, capsys):
    out = tmp_path / "out.mp4"
    assert (
        main(
            [
                "restore",
                str(clip),
                "-o",
                str(out),
                "--weights",
                str(sr_weights),
                "--tile",
                "4",
                "0",
                "0",
                "--tile-overlap",
                "2",
                "0",
                "0",
            ]
        )
        == 0
    )
    assert "5 frames" in capsys.readouterr().err
    src, dst = probe(clip), probe(out)
    assert (dst.width, dst.height) == (4 * src.width, 4 * src.height)
    assert dst.fps == src.fps and dst.frame_count == 5
    import av

    with av.open(str(out)) as c:
        assert len(c.streams.audio) == 1
    assert list(tmp_path.iterdir()) == [out]  # no temporary files left


def test_frames_folder_names_bit_depth_and_resume(sr_weights, tmp_path, monkeypatch):
    src = tmp_path / "frames"
    src.mkdir()
    names = ["shot 9", "shot 10", "shot 11", "shot 12", "shot 13"]  # natural order, spaces
    for name, img in zip(names, smooth_frames(5, 34, 33)):
        write_png(src / f"{name}.png", img.astype(np.uint16) * 257)
    full = tmp_path / "full"
    rvrt.restore(src, full, weights=sr_weights, tile=(3, 0, 0), tile_overlap=(1, 0, 0), progress=False)
    assert sorted(p.name for p in full.iterdir() if not p.name.startswith(".")) == sorted(f"{n}.png" for n in names)
    assert read_image(full / "shot 10.png")[0].dtype == np.uint16  # 16-bit in, 16-bit out

    # interrupt after two frames, then resume: the result equals the uninterrupted run
    from rvrt.media import writers

    part = tmp_path / "part"
    original = writers._FramesWriter.write
    calls = {"n": 0}

    def failing(self, data, name=None):
        if calls["n"] == 2:
            raise KeyboardInterrupt
        calls["n"] += 1
        return original(self, data, name)

    monkeypatch.setattr(writers._FramesWriter, "write", failing)
    with pytest.raises(KeyboardInterrupt):
        rvrt.restore(src, part, weights=sr_weights, tile=(3, 0, 0), tile_overlap=(1, 0, 0), progress=False)
    monkeypatch.setattr(writers._FramesWriter, "write", original)
    assert len(list(part.glob("*.png"))) == 2
    summary = rvrt.restore(
        src, part, weights=sr_weights, tile=(3, 0, 0), tile_overlap=(1, 0, 0), progress=False, resume=True
    )
    assert summary.resumed_from == 2 and summary.frames == 3
    for n in names:
        assert np.array_equal(read_image(part / f"{n}.png")[0], read_image(full / f"{n}.png")[0]), n


def test_restore_iter_matches_the_model_and_adds_seeded_noise(sr_weights):
    frames = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in smooth_frames(2, 36, 36)]
    model = rvrt.load_model(sr_weights)
    got = dict(rvrt.restore_iter(frames, model=model, tile=(0, 0, 0)))
    with torch.no_grad():
        ref = model(torch.stack(frames)[None])[0].clamp(0, 1)
    torch.testing.assert_close(torch.stack([got[0], got[1]]), ref, rtol=0, atol=1e-6)
    a = dict(rvrt.restore_iter(frames, model=model, tile=(0, 0, 0), sigma=10, add_noise=True, seed=3))
    b = dict(rvrt.restore_iter(frames, model=model, tile=(0, 0, 0), sigma=10, add_noise=True, seed=3))
    assert torch.equal(a[1], b[1]) and not torch.equal(a[1], got[1])


def test_denoising_model_takes_sigma(tmp_path):
    weights = _weights(tmp_path, DENOISE, "tiny_denoise")
    src = tmp_path / "noisy"
    src.mkdir()
    for i, img in enumerate(smooth_frames(2, 132, 132)):
        write_png(src / f"{i:03d}.png", img)
    out = tmp_path / "out"
    assert main(["restore", str(src), "-o", str(out), "--weights", str(weights), "--quiet"]) == 2
    args = ["restore", str(src), "--weights", str(weights), "--sigma", "15", "--bit-depth", "16", "--quiet"]
    assert main([*args, "-o", str(out), "--add-noise", "--seed", "3"]) == 0
    assert main([*args, "-o", str(tmp_path / "clean")]) == 0
    noisy, clean = (np.stack([read_image(d / f"{i:03d}.png")[0] for i in range(2)]) for d in (out, tmp_path / "clean"))
    assert noisy.shape == clean.shape == (2, 132, 132, 3) and clean.dtype == np.uint16

    model = rvrt.load_model(weights)
    x = torch.stack([torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in smooth_frames(2, 132, 132)])

    def as_png(y: torch.Tensor) -> np.ndarray:
        return y.clamp(0, 1).mul(65535).round().permute(0, 2, 3, 1).numpy().astype(int)

    with torch.no_grad():  # the model sees the frames and a fourth channel of sigma / 255
        expected = as_png(model(torch.cat([x, torch.full_like(x[:, :1], 15 / 255)], 1)[None])[0])
    # 16-bit levels: measured equal; the same model at sigma 14 or 16 is up to 14 levels away (0 -> 166)
    assert np.abs(clean.astype(int) - expected).max() <= 2
    # with --add-noise: the API's seeded noise at the same sigma and seed (measured equal; another seed
    # gives a mean 3681 levels away)
    api = dict(rvrt.restore_iter(x, model=model, sigma=15, add_noise=True, seed=3))
    assert np.abs(noisy.astype(int) - as_png(torch.stack([api[0], api[1]]))).max() <= 2


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["missing.mp4", "-o", "x.mp4"], "not found"),
        (["{clip}", "-o", "{exists}"], "exists"),
        (["{clip}", "-o", "out.mp4", "--sigma", "10"], "only applies to denoising"),
        (["{clip}", "-o", "out.mp4", "--resume", "--overwrite"], "exclude each other"),
        (["{clip}", "-o", "out.mp4", "--tile", "8", "8"], "three non-negative integers"),
        (["{clip}", "-o", "out.xyz"], "'.xyz' is not a video type"),
        (["{clip}", "-o", "out.mp4", "--crf", "60"], "--crf for libx264 must be 0..51"),
        (["{clip}", "-o", "out.mp4", "--fps", "nan"], "--fps"),
        (["{clip}", "-o", "out.mp4", "--start", "99"], "past the end"),
        (["{clip}", "-o", "out.mp4", "--tile", "4", "0", "0", "--tile-overlap", "4", "0", "0"], "smaller than"),
        (["{clip}", "-o", "out.mp4", "--device", "cuda:7"], "CUDA"),
        (["{clip}", "-o", "out.mp4", "-m", "nope"], "unknown model 'nope'"),
    ],
)
def test_bad_input_is_one_clear_line(clip, sr_weights, tmp_path, capsys, monkeypatch, args, message):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "exists.mp4").write_bytes(b"keep me")
    argv = [a.format(clip=clip, exists=tmp_path / "exists.mp4") for a in args]
    if "-m" not in argv:
        argv += ["--weights", str(sr_weights)]
    assert main(["restore", *argv, "--quiet"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1, err
    assert (tmp_path / "exists.mp4").read_bytes() == b"keep me"
    assert not (tmp_path / "out.mp4").exists()


def test_compiled_runner_gives_the_same_frames(sr_weights):
    frames = [torch.from_numpy(f).permute(2, 0, 1).float() / 255 for f in smooth_frames(2, 36, 36)]
    model = rvrt.load_model(sr_weights)
    plain = dict(rvrt.restore_iter(frames, model=model, tile=(0, 0, 0)))
    # the "aot_eager" backend traces and runs the graph without generating code (fast in CI)
    traced = dict(rvrt.restore_iter(frames, model=model, tile=(0, 0, 0), compile="aot_eager"))
    torch.testing.assert_close(traced[1], plain[1], rtol=0, atol=1e-5)


def test_output_may_not_be_the_input(sr_weights, tmp_path, capsys):
    src = tmp_path / "frames"
    src.mkdir()
    for i, img in enumerate(smooth_frames(2, 34, 34)):
        write_png(src / f"{i}.png", img)
    before = sorted(p.read_bytes() for p in src.iterdir())
    assert main(["restore", str(src), "-o", str(src), "--weights", str(sr_weights), "--overwrite", "--quiet"]) == 2
    assert "is (or holds) the input" in capsys.readouterr().err
    assert sorted(p.read_bytes() for p in src.iterdir()) == before
