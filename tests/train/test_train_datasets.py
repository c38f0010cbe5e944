"""Training/validation datasets on tiny generated folder layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import ndimage
from torch.utils.data import DataLoader

from rvrt.data.datasets import (
    VideoClipDataset,
    build_dataset,
)
from rvrt.data.degradations import area_downsample
from rvrt.data.sources import FolderFrames, discover_sequences
from rvrt.data.transforms import apply_augment, augment_flags
from rvrt.errors import InputError
from rvrt.train.distributed import ResumableSampler


def _texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    # smooth random colours plus noise: every crop position is unique
    base = rng.integers(0, 256, (h // 4 + 1, w // 4 + 1, 3)).astype(np.float32)
    up = np.kron(base, np.ones((4, 4, 1)))[:h, :w]
    return np.clip(up + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _write_seq(root, seq: str, frames: list[np.ndarray], ext: str = "png", names=None) -> None:
    folder = root / seq
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(frames):
        Image.fromarray(f).save(folder / (names[i] if names else f"{i:08d}.{ext}"))


def _paired_tree(tmp_path, seqs=("000", "001", "011", "002"), n=6, h=32, w=40, scale=4, seed=0):
    rng = np.random.default_rng(seed)
    for s in seqs:
        gt = [_texture(rng, h, w) for _ in range(n)]
        _write_seq(tmp_path / "gt", s, gt)
        _write_seq(tmp_path / "lq", s, [area_downsample(f, scale) for f in gt])
    return tmp_path / "gt", tmp_path / "lq"


def test_reds_partition_crop_alignment_and_augmentation(tmp_path):
    gt, lq = _paired_tree(tmp_path)
    cfg = dict(
        type="reds",
        gt_root=str(gt),
        lq_root=str(lq),
        num_frames=3,
        gt_patch=16,
        scale=4,
        hflip=True,
        rot=True,
        reverse=True,
    )
    train = build_dataset(cfg, train=True, seed=3)
    assert sorted({s for s, _ in train.items}) == ["001", "002"]  # REDS4 clips 000 and 011 held out
    assert len(train) == 2 * 6  # one item per frame
    for i in range(len(train)):
        s = train[(i, 0)]
        assert s["lq"].shape == (3, 3, 4, 4) and s["gt"].shape == (3, 3, 16, 16)
        assert s["lq"].dtype == torch.float32 and 0 <= s["gt"].min() and s["gt"].max() <= 1
        # LQ was made by 4x4 block means of GT: the crop and every flip must keep them aligned
        gt_u8 = (s["gt"] * 255).round().byte().permute(0, 2, 3, 1).numpy()
        again = np.stack([area_downsample(f, 4) for f in gt_u8])
        assert np.array_equal(again, (s["lq"] * 255).round().byte().permute(0, 2, 3, 1).numpy())
    val = build_dataset(dict(cfg, type="reds"), train=False, seed=3)
    assert [val[i]["key"] for i in range(len(val))] == ["000", "011"]
    assert val[0]["lq"].shape == (6, 3, 8, 10) and val[0]["gt"].shape == (6, 3, 32, 40)


def test_samples_are_a_function_of_index_and_epoch(tmp_path):
    gt, lq = _paired_tree(tmp_path, seqs=("a", "b"))
    ds = build_dataset(
        dict(type="paired", gt_root=str(gt), lq_root=str(lq), num_frames=2, gt_patch=8), train=True, seed=1
    )
    a, b, c = ds[(3, 0)], ds[(3, 0)], ds[(3, 1)]
    assert torch.equal(a["lq"], b["lq"]) and torch.equal(a["gt"], b["gt"])
    assert not torch.equal(a["gt"], c["gt"])


@pytest.mark.parametrize("workers", [0, 2])
def test_batches_do_not_depend_on_workers(tmp_path, workers):
    gt, lq = _paired_tree(tmp_path, seqs=("a", "b"))
    ds = build_dataset(
        dict(type="paired", gt_root=str(gt), lq_root=str(lq), num_frames=2, gt_patch=8), train=True, seed=1
    )

    def batches(nw):
        sampler = ResumableSampler(len(ds), batch_size=2, seed=5)
        sampler.set_position(1, 2)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=nw)
        return [b["gt"] for b in loader]

    ref, got = batches(0), batches(workers)
    assert len(got) == len(ref) == 5  # 12 items -> 6 batches of 2, the first one skipped
    assert all(torch.equal(x, y) for x, y in zip(ref, got))


def test_vimeo_septuplets_mirrored_to_14_frames(tmp_path):
    rng = np.random.default_rng(0)
    names = [f"im{i}.png" for i in range(1, 8)]
    seqs = ["00001/0001", "00001/0002", "00002/0001"]
    for s in seqs:
        gt = [_texture(rng, 32, 32) for _ in range(7)]
        _write_seq(tmp_path / "sequences", s, gt, names=names)
        _write_seq(tmp_path / "lr", s, [area_downsample(f, 4) for f in gt], names=names)
    (tmp_path / "sep_trainlist.txt").write_text("\n".join(seqs[:2]) + "\n")
    ds = build_dataset(
        dict(type="vimeo", gt_root=str(tmp_path / "sequences"), lq_root=str(tmp_path / "lr"), gt_patch=16),
        train=True,
        seed=0,
    )
    assert len(ds) == 2  # one item per septuplet of the list
    s = ds[(1, 0)]
    assert s["lq"].shape == (14, 3, 4, 4) and s["gt"].shape == (14, 3, 16, 16)
    assert torch.equal(s["lq"][7:], s["lq"][:7].flip(0)) and torch.equal(s["gt"][7:], s["gt"][:7].flip(0))
    # a list entry without its folder is an input error naming it
    (tmp_path / "sep_trainlist.txt").write_text("00001/0001\n00009/0001\n")
    with pytest.raises(InputError, match="00009/0001"):
        build_dataset(
            dict(type="vimeo", gt_root=str(tmp_path / "sequences"), lq_root=str(tmp_path / "lr")), train=True, seed=0
        )


def test_malformed_layouts_are_input_errors(tmp_path):
    gt, lq = _paired_tree(tmp_path, seqs=("a", "b"))
    extra = lq / "b" / "00000005.png"
    kept = extra.read_bytes()
    extra.unlink()
    with pytest.raises(InputError, match="sequence b: 6 GT frames .* 5 LQ frames"):
        build_dataset(dict(type="paired", gt_root=str(gt), lq_root=str(lq), num_frames=2, gt_patch=8), train=True)
    extra.write_bytes(kept)
    with pytest.raises(InputError, match="not found"):
        build_dataset(dict(type="dvd", gt_root=str(tmp_path / "nope"), lq_root=str(lq)), train=True)
    with pytest.raises(InputError, match="unknown dataset type"):
        build_dataset(dict(type="imagenet"), train=True)
    with pytest.raises(InputError, match="no option"):
        build_dataset(dict(type="paired", gt_root=str(gt), lq_root=str(lq), frame_count=3), train=True)
    # LQ that is not 1/scale of GT: reported when read
    ds = build_dataset(
        dict(type="paired", gt_root=str(gt), lq_root=str(lq), num_frames=2, gt_patch=8, scale=2), train=True
    )
    with pytest.raises(InputError, match="not 2x larger"):
        ds[0]
    # a corrupt frame file
    (gt / "a" / "00000000.png").write_bytes(b"not a png")
    ds = build_dataset(dict(type="paired", gt_root=str(gt), lq_root=str(lq), num_frames=2, gt_patch=8), train=True)
    with pytest.raises(InputError, match="cannot read image"):
        ds[(0, 0)]


def test_davis_noise_per_clip_unclipped_with_sigma_map(tmp_path):
    rng = np.random.default_rng(0)
    for s in ("bear", "boat"):
        _write_seq(tmp_path, s, [_texture(rng, 40, 40) for _ in range(5)], ext="jpg")
    ds = build_dataset(
        dict(type="davis", gt_root=str(tmp_path), num_frames=4, gt_patch=32, sigma_min=50, sigma_max=50),
        train=True,
        seed=0,
    )
    s = ds[(2, 0)]
    assert s["lq"].shape == (4, 4, 32, 32) and s["gt"].shape == (4, 3, 32, 32)
    assert torch.allclose(s["lq"][:, 3], torch.tensor(50 / 255))
    noise = s["lq"][:, :3] - s["gt"]
    assert noise.std().item() == pytest.approx(50 / 255, rel=0.05)
    assert (s["lq"][:, :3] < 0).any() and (s["lq"][:, :3] > 1).any()  # not clipped
    ds2 = build_dataset(dict(type="davis", gt_root=str(tmp_path), num_frames=4, gt_patch=32), train=True)
    sigmas = {float(ds2[(i, 0)]["lq"][0, 3, 0, 0]) * 255 for i in range(len(ds2))}
    assert len(sigmas) == len(ds2) and all(0 <= v <= 50 for v in sigmas)  # one sigma per clip, in [0, 50]
    val = build_dataset(dict(type="noisy", gt_root=str(tmp_path), sigma=30), train=False)
    item = val[1]
    # by hand: the frames of the second sequence (sorted: "boat") as read by PIL, plus noise of sigma 30
    # drawn from the generator seeded (seed 0, epoch 0, item 1), in float32; then the sigma map
    gt = np.stack([np.asarray(Image.open(tmp_path / "boat" / f"{i:08d}.jpg")) for i in range(5)])
    gt = torch.from_numpy(gt).permute(0, 3, 1, 2).float() / 255
    noise = np.random.default_rng([0, 0, 1]).standard_normal((5, 3, 40, 40), dtype=np.float32) * np.float32(30 / 255)
    assert item["key"] == "boat" and item["lq"].shape == (5, 4, 40, 40)
    torch.testing.assert_close(item["gt"], gt, rtol=0, atol=1e-7)
    torch.testing.assert_close(item["lq"][:, :3], gt + torch.from_numpy(noise), rtol=0, atol=1e-6)
    assert torch.equal(item["lq"][:, 3], torch.full((5, 40, 40), 30 / 255))
    again, first = val[1], val[0]  # the same noise on every read; another draw for another item
    assert torch.equal(again["lq"], item["lq"])
    assert not torch.allclose(first["lq"][:, :3] - first["gt"], item["lq"][:, :3] - item["gt"], atol=0.05)
    with pytest.raises(InputError, match="sigma"):
        build_dataset(dict(type="noisy", gt_root=str(tmp_path)), train=False)


def _blur_down(img: np.ndarray) -> np.ndarray:
    # a stand-in BD degradation with a 13-tap support, like the real one's Gaussian
    blurred = ndimage.gaussian_filter(img.astype(np.float64), sigma=(1.6, 1.6, 0), mode="nearest", truncate=3.75)
    return np.clip(np.rint(blurred[::4, ::4]), 0, 255).astype(np.uint8)


def test_on_the_fly_degradation_equals_whole_frame_degradation(tmp_path):
    rng = np.random.default_rng(1)
    frames = [_texture(rng, 64, 80) for _ in range(4)]
    _write_seq(tmp_path, "clip", frames)
    ds = VideoClipDataset(
        FolderFrames(tmp_path),
        degrade=_blur_down,
        scale=4,
        num_frames=2,
        gt_patch=24,
        hflip=False,
        rot=False,
        margin=4,
        seed=0,
    )
    full = [_blur_down(f) for f in frames]
    for i in range(len(ds)):
        s = ds[(i, 0)]
        gt = (s["gt"][0] * 255).round().byte().permute(1, 2, 0).numpy()
        lq = (s["lq"][0] * 255).round().byte().permute(1, 2, 0).numpy()
        pos = [
            (y, x)
            for y in range(0, 64 - 23, 4)
            for x in range(0, 80 - 23, 4)
            if any(np.array_equal(f[y : y + 24, x : x + 24], gt) for f in frames)
        ]
        assert len(pos) == 1
        y, x = pos[0]
        assert any(np.array_equal(f[y // 4 : y // 4 + 6, x // 4 : x // 4 + 6], lq) for f in full)


def test_degraded_roots_folders_and_video_files(tmp_path):
    import av

    rng = np.random.default_rng(2)
    frames = [_texture(rng, 48, 48) for _ in range(5)]
    _write_seq(tmp_path / "frames", "one", frames)
    video = tmp_path / "videos" / "clip.mp4"
    video.parent.mkdir()
    with av.open(str(video), "w") as out:
        stream = out.add_stream("mpeg4", rate=25)
        stream.width = stream.height = 48
        stream.pix_fmt = "yuv420p"
        for f in frames:
            out.mux(stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        out.mux(stream.encode(None))
    src = discover_sequences(video)
    assert list(src.frames) == [str(video)] and len(src.frames[str(video)]) == 5
    assert src.read(str(video), [4, 1])[0].shape == (48, 48, 3)
    ds = build_dataset(
        dict(
            type="degraded",
            roots=[str(tmp_path / "frames"), str(tmp_path / "videos")],
            degradation="area",
            num_frames=3,
            gt_patch=32,
        ),
        train=True,
        seed=0,
    )
    assert len(ds) == 10
    assert ds[(7, 0)]["lq"].shape == (3, 3, 8, 8)
    with pytest.raises(InputError, match="unknown degradation"):
        build_dataset(dict(type="degraded", roots=[str(tmp_path / "frames")], degradation="jpeg"), train=True)


def test_short_sequences_are_skipped_and_none_left_is_an_error(tmp_path):
    gt, lq = _paired_tree(tmp_path, seqs=("a",), n=3)
    with pytest.raises(InputError, match="4 frames"):
        build_dataset(dict(type="paired", gt_root=str(gt), lq_root=str(lq), num_frames=4, gt_patch=8), train=True)


def test_augment_flags_cover_the_eight_symmetries():
    rng = np.random.default_rng(0)
    clip = np.arange(2 * 3 * 3 * 1).reshape(2, 3, 3, 1)
    seen = {apply_augment(clip, augment_flags(rng, hflip=True, rot=True)).tobytes() for _ in range(200)}
    assert len(seen) == 8
    assert {augment_flags(rng, hflip=False, rot=False) for _ in range(20)} == {(False, False, False)}
    h, v, t = (
        apply_augment(clip, (True, False, False)),
        apply_augment(clip, (False, True, False)),
        apply_augment(clip, (False, False, True)),
    )
    assert np.array_equal(h, clip[:, :, ::-1]) and np.array_equal(v, clip[:, ::-1])
    assert np.array_equal(t, clip.transpose(0, 2, 1, 3))


def test_synthetic_is_deterministic():
    cfg = dict(type="synthetic", count=2, length=5, size=[48, 48], num_frames=3, gt_patch=32)
    a = build_dataset(cfg, train=True, seed=4)[(6, 2)]
    b = build_dataset(cfg, train=True, seed=4)[(6, 2)]
    assert torch.equal(a["gt"], b["gt"]) and a["lq"].shape == (3, 3, 8, 8)


def test_lmdb_source(tmp_path):
    lmdb = pytest.importorskip("lmdb")
    import io

    rng = np.random.default_rng(0)
    env = lmdb.open(str(tmp_path / "gt.lmdb"), map_size=1 << 24)
    lines = []
    with env.begin(write=True) as txn:
        for s in ("000", "001"):
            for i in range(3):
                buf = io.BytesIO()
                Image.fromarray(_texture(rng, 16, 16)).save(buf, format="PNG")
                txn.put(f"{s}/{i:08d}".encode(), buf.getvalue())
                lines.append(f"{s}/{i:08d}.png (16,16,3) 1")
    env.close()
    (tmp_path / "gt.lmdb" / "meta_info.txt").write_text("\n".join(lines) + "\n")
    ds = build_dataset(
        dict(type="noisy", gt_root=str(tmp_path / "gt.lmdb"), io="lmdb", num_frames=2, gt_patch=8), train=True
    )
    assert len(ds) == 6 and ds[(0, 0)]["lq"].shape == (2, 4, 8, 8)
