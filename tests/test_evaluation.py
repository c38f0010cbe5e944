"""evaluate(): sequence discovery, protocols (every frame, Vimeo centre frame, denoising), results."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rvrt.data.frames import read_image, write_image
from rvrt.errors import InputError
from rvrt.evaluation import PROTOCOLS, Protocol, default_protocol, evaluate, get_protocol, read_sequence_list
from rvrt.metrics import psnr, ssim, to_uint8

skm = pytest.importorskip("skimage.metrics")

DEBLUR = default_protocol("deblur", 1)


def _frames(root, seq, n, h, w, seed, names=None):
    rng = np.random.default_rng(seed)
    imgs = []
    for i in range(n):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        name = names[i] if names else f"{i:04d}.png"
        write_image(root / seq / name if seq else root / name, img)
        imgs.append(img)
    return imgs


def _identity(lq: torch.Tensor) -> torch.Tensor:
    return lq.clone()


def _sk_scores(out: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    return (
        skm.peak_signal_noise_ratio(gt, out, data_range=255),
        skm.structural_similarity(
            out, gt, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=-1
        ),
    )


def test_identity_restore_scores_lq_against_gt(tmp_path):
    lq_root, gt_root = tmp_path / "lq", tmp_path / "gt"
    lq = {"a": _frames(lq_root, "a", 3, 16, 20, 0), "b": _frames(lq_root, "b", 1, 16, 20, 1)}
    gt = {"a": _frames(gt_root, "a", 3, 16, 20, 2), "b": _frames(gt_root, "b", 1, 16, 20, 3)}
    res = evaluate(_identity, lq_root, gt_root, DEBLUR, progress=False)
    assert [s.name for s in res.sequences] == ["a", "b"]
    for seq in res.sequences:
        for i, f in enumerate(seq.frames):
            p, s = _sk_scores(lq[seq.name][i], gt[seq.name][i])
            assert f.psnr == pytest.approx(p, rel=1e-12)
            assert f.ssim == pytest.approx(s, abs=1e-12)
            py = psnr(lq[seq.name][i], gt[seq.name][i], y_channel=True)
            assert f.psnr_y == pytest.approx(py, rel=1e-12)
            assert f.name == f"{i:04d}"
    per_seq = [np.mean([f.psnr for f in s.frames]) for s in res.sequences]
    all_frames = [f.psnr for s in res.sequences for f in s.frames]
    assert res.psnr == pytest.approx(np.mean(per_seq), rel=1e-12)  # mean of sequence means
    assert res.mean("psnr", "frame") == pytest.approx(np.mean(all_frames), rel=1e-12)
    assert res.mean("psnr", "frame") != pytest.approx(res.psnr)  # different lengths: the two differ
    assert res.reported == (res.psnr, res.ssim)
    assert res.num_frames == 4


def test_sr_with_upsampling_restore(tmp_path):
    lq_root, gt_root = tmp_path / "lq", tmp_path / "gt"
    lq = _frames(lq_root, "", 2, 12, 14, 0)
    gt = _frames(gt_root, "", 2, 48, 56, 1)

    def upsample(x):
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)

    res = evaluate(upsample, lq_root, gt_root, "vid4", progress=False)
    assert [s.name for s in res.sequences] == ["gt"]
    for i, f in enumerate(res.sequences[0].frames):
        out = to_uint8(upsample(torch.from_numpy(lq[i]).permute(2, 0, 1)[None].float() / 255)[0])
        assert f.psnr == pytest.approx(_sk_scores(out, gt[i])[0], rel=1e-12)
        assert f.ssim_y == pytest.approx(ssim(out, gt[i], y_channel=True), rel=1e-12)
    assert res.reported == (res.psnr_y, res.ssim_y)  # Vid4 is reported on Y


def test_folder_mismatches_are_input_errors(tmp_path):
    lq_root, gt_root = tmp_path / "lq", tmp_path / "gt"
    _frames(lq_root, "a", 2, 16, 16, 0)
    _frames(gt_root, "a", 3, 16, 16, 0)
    with pytest.raises(InputError, match=r"paired by name and do not match \(2 LQ frames, 3 GT frames; no LQ frame"):
        evaluate(_identity, lq_root, gt_root, DEBLUR, progress=False)
    _frames(gt_root, "b", 2, 16, 16, 0)
    with pytest.raises(InputError, match="only in GT"):
        evaluate(_identity, lq_root, gt_root, DEBLUR, progress=False)
    with pytest.raises(InputError, match="not found"):
        evaluate(_identity, tmp_path / "nope", gt_root, DEBLUR, progress=False)


def test_frames_are_paired_by_name_not_by_position(tmp_path):
    lq_root, gt_root = tmp_path / "lq", tmp_path / "gt"
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (16, 16, 3), dtype=np.uint8) for _ in range(2)]
    for name, img in zip(("frame 9", "frame 10"), imgs, strict=True):  # natural order: 9 before 10
        write_image(lq_root / "a" / f"{name}.png", img)
        write_image(gt_root / "a" / f"{name}.png", img)
    result = evaluate(_identity, lq_root, gt_root, DEBLUR, progress=False)
    assert [f.name for f in result.sequences[0].frames] == ["frame 9", "frame 10"]
    assert all(math.isinf(f.psnr) for f in result.sequences[0].frames)  # each LQ frame met its own GT
    (gt_root / "a" / "frame 10.png").rename(gt_root / "a" / "frame 11.png")
    with pytest.raises(InputError, match="no GT frame for frame 10; no LQ frame for frame 11"):
        evaluate(_identity, lq_root, gt_root, DEBLUR, progress=False)


def test_size_checks(tmp_path):
    lq_root, gt_root = tmp_path / "lq", tmp_path / "gt"
    _frames(lq_root, "a", 2, 16, 16, 0)
    _frames(gt_root, "a", 2, 16, 16, 0)
    with pytest.raises(InputError, match="GT = 4 x LQ"):
        evaluate(_identity, lq_root, gt_root, "reds4", progress=False)
    with pytest.raises(InputError, match="restore_fn returned"):
        evaluate(lambda x: x[:, :, :8], lq_root, gt_root, DEBLUR, progress=False)
    _frames(lq_root, "c", 1, 16, 16, 0)
    write_image(lq_root / "c" / "0001.png", np.zeros((15, 16, 3), np.uint8))
    _frames(gt_root, "c", 2, 16, 16, 0)
    with pytest.raises(InputError, match="the first is"):
        evaluate(_identity, lq_root, gt_root, DEBLUR, progress=False)


def test_vimeo_mirrors_seven_frames_and_scores_the_centre(tmp_path):
    lq_root, gt_root = tmp_path / "lq", tmp_path / "gt"
    names = [f"im{i}.png" for i in range(1, 8)]
    for seq in ("00001/0001", "00001/0002"):
        _frames(lq_root, seq, 7, 8, 10, 0, names)
        _frames(gt_root, seq, 7, 32, 40, 1, names)
        write_image(gt_root / seq / "im4.png", np.full((32, 40, 3), 100, np.uint8), overwrite=True)
    seen = []

    def restore(lq):
        seen.append(lq)
        # frame i of the output is the constant i * 10 / 255: the centre copies are 3 and 10
        t = lq.shape[0]
        return torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 3, 32, 40) * 10 / 255

    res = evaluate(restore, lq_root, gt_root, "vimeo", progress=False, save_dir=tmp_path / "out")
    assert len(seen) == 2 and seen[0].shape == (14, 3, 8, 10)
    assert torch.equal(seen[0][7:], seen[0][:7].flip(0))
    lq0 = np.stack([read_image(lq_root / "00001/0001" / n) for n in names])
    assert torch.equal(seen[0][:7], torch.from_numpy(lq0).permute(0, 3, 1, 2).float() / 255)
    # mean of outputs 3 and 10 = 65 / 255 against a GT of 100: PSNR = 20 log10(255 / 35)
    for s in res.sequences:
        assert [f.name for f in s.frames] == ["im4"]
        assert s.psnr == pytest.approx(20 * math.log10(255 / 35), rel=1e-12)
    assert (read_image(tmp_path / "out" / "00001/0002" / "im4.png") == 65).all()
    only = evaluate(restore, lq_root, gt_root, "vimeo", progress=False, sequences=["00001/0002"])
    assert [s.name for s in only.sequences] == ["00001/0002"]
    with pytest.raises(InputError, match="not found"):
        evaluate(restore, lq_root, gt_root, "vimeo", progress=False, sequences=["00009/0001"])


def test_denoising_protocol_makes_the_official_noisy_input(tmp_path):
    gt_root = tmp_path / "gt"
    gt = _frames(gt_root, "x", 3, 16, 16, 0)
    _frames(gt_root, "y", 3, 16, 16, 0)  # same frames: same noise (seed reset per sequence)
    seen = []

    def restore(lq):
        seen.append(lq)
        return lq[:, :3]

    with pytest.raises(InputError, match="sigma"):
        evaluate(restore, None, gt_root, "set8", progress=False)
    res = evaluate(restore, None, gt_root, "set8", sigma=30, progress=False)
    clip = torch.from_numpy(np.stack(gt)).permute(0, 3, 1, 2).float() / 255
    with torch.random.fork_rng():
        torch.manual_seed(0)
        level = torch.ones((1, 1, 1, 1)) * (30 / 255.0)
        noisy = clip + torch.normal(mean=0, std=level.expand_as(clip))
    assert seen[0].shape == (3, 4, 16, 16)
    assert torch.equal(seen[0][:, :3], noisy)
    assert torch.equal(seen[0][:, 3], torch.full((3, 16, 16), 30 / 255.0))
    assert torch.equal(seen[0], seen[1])
    assert res.sigma == 30
    assert res.sequences[0].frames[0].psnr == pytest.approx(psnr(noisy[0], gt[0]), rel=1e-12)
    with pytest.raises(InputError, match="only used by denoising"):
        evaluate(restore, gt_root, gt_root, DEBLUR, sigma=30, progress=False)


def test_results_json_csv_table_and_save(tmp_path):
    lq_root, gt_root = tmp_path / "lq", tmp_path / "gt"
    _frames(lq_root, "a", 2, 16, 16, 0)
    gt = _frames(gt_root, "a", 2, 16, 16, 1)
    write_image(lq_root / "a" / "0001.png", gt[1], overwrite=True)  # identical frame: PSNR inf
    res = evaluate(_identity, lq_root, gt_root, DEBLUR, progress=False, save_dir=tmp_path / "save")
    assert res.sequences[0].frames[1].psnr == math.inf and math.isinf(res.psnr)
    assert np.array_equal(read_image(tmp_path / "save" / "a" / "0001.png"), gt[1])

    data = json.loads(res.to_json(tmp_path / "r.json").read_text())
    assert data["num_frames"] == 2 and data["protocol"] == DEBLUR.name
    assert data["sequences"][0]["frames"][0]["psnr"] == pytest.approx(res.sequences[0].frames[0].psnr)
    assert data["sequences"][0]["frames"][1]["psnr"] is None and data["overall"]["psnr"] is None
    assert data["overall"]["ssim"] == pytest.approx(res.ssim)

    rows = list(csv.DictReader(res.to_csv(tmp_path / "r.csv").open()))
    assert [r["frame"] for r in rows] == ["0000", "0001"]
    assert float(rows[0]["ssim_y"]) == res.sequences[0].frames[0].ssim_y
    assert rows[1]["psnr"] == "inf"
    seq_rows = list(csv.DictReader(res.to_csv(tmp_path / "s.csv", level="sequence").open()))
    assert seq_rows[0]["num_frames"] == "2"

    with pytest.raises(InputError, match="exists"):
        res.to_json(tmp_path / "r.json")
    table = res.table()
    assert "a" in table.splitlines()[2] and "mean of sequences" in table and "SSIM-Y" in table

    calls = []
    with pytest.raises(InputError, match="exists"):  # refused before any restoring
        evaluate(lambda x: calls.append(x) or x, lq_root, gt_root, DEBLUR, progress=False, save_dir=tmp_path / "save")
    assert not calls
    evaluate(_identity, lq_root, gt_root, DEBLUR, progress=False, save_dir=tmp_path / "save", overwrite=True)


def test_protocol_table_and_lookup(tmp_path):
    official = {"reds4", "vid4", "udm10", "vimeo", "dvd", "gopro", "set8", "davis"}
    assert set(PROTOCOLS) == official | {"vid4x2", "reds4x2"}  # x2: the x4 rules (tests/models/test_scales.py)
    assert all(p.border == 0 for p in PROTOCOLS.values())
    assert {k for k, p in PROTOCOLS.items() if p.channel == "Y"} == {"vid4", "vid4x2", "udm10", "vimeo"}
    assert {k for k, p in PROTOCOLS.items() if p.noise} == {"set8", "davis"}
    assert PROTOCOLS["vimeo"].septuplet.outputs == (3, 10)
    assert get_protocol("Vid4") is PROTOCOLS["vid4"]
    with pytest.raises(InputError, match="unknown protocol"):
        get_protocol("nope")
    with pytest.raises(ValueError):
        Protocol("x", "x", "sr", 4, "YUV")
    (tmp_path / "list.txt").write_text("00001/0266 7 (256,448,3)\n\n00001/0268\n")
    assert read_sequence_list(tmp_path / "list.txt") == ["00001/0266", "00001/0268"]


def test_progress_counts_frames_over_all_sequences_and_moves_inside_one(tmp_path, monkeypatch):
    from rvrt.inference import progress as progress_module

    lq_root, gt_root = tmp_path / "lq", tmp_path / "gt"
    for seq in ("a", "b"):
        _frames(lq_root, seq, 3, 16, 16, 0)
        _frames(gt_root, seq, 3, 16, 16, 0)
    positions = []
    original = progress_module.Progress._move
    record = lambda self, pos: (positions.append(pos), original(self, pos))  # noqa: E731
    monkeypatch.setattr(progress_module.Progress, "_move", record)
    totals = []
    monkeypatch.setattr(progress_module.Progress, "close", lambda self: totals.append(self.total))

    def restore(lq, progress=None):  # reports half of its clip, then all of it
        progress(lq.shape[0] / 2)
        progress(lq.shape[0])
        return lq.clone()

    evaluate(restore, lq_root, gt_root, DEBLUR, progress=True)
    assert totals == [6]  # frames, over both sequences
    assert sorted(set(positions)) == [1.5, 3.0, 4.5, 6.0] and positions == sorted(positions)
