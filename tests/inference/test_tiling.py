"""Tiling and streaming: exact for per-pixel models, close for RVRT, bounded, resumable."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import tiny_rvrt
from rvrt.inference.stages import model_runner
from rvrt.inference.temporal import WindowSchedule, restore_frames
from rvrt.inference.tiling import TileGrid, crossfade, tile_starts


def pixelwise(scale: int):
    """A per-pixel, per-frame model: nearest upsampling of a nonlinear colour map."""

    def run(x):
        y = torch.sin(3 * x[:, :, :3]) * x[:, :, :3].flip(2) + 0.1
        return y.repeat_interleave(scale, -1).repeat_interleave(scale, -2)

    return run


def temporal_mixer(x):
    """Depends on the whole window (frame i gets the window mean): windows matter, tiles do not."""
    return x[:, :, :3] * 0.5 + x[:, :, :3].mean(1, keepdim=True) * 0.5


def _video(t, h, w, seed=0):
    return torch.rand(t, 3, h, w, generator=torch.Generator().manual_seed(seed))


def _restore(run, frames, scale, tile, overlap, **kw):
    return dict(restore_frames(run, iter(frames), scale=scale, tile=tile, overlap=overlap, **kw))


def test_tile_starts_match_the_official_rule():
    assert tile_starts(100, 0, 0) == [0]
    assert tile_starts(100, 128, 20) == [0]
    assert tile_starts(300, 128, 20) == [0, 108, 172]
    assert tile_starts(10, 4, 2) == [0, 2, 4, 6]


def test_crossfades_sum_to_one():
    a = crossfade(12, 0, 5, dtype=torch.float64)
    b = crossfade(12, 5, 0, dtype=torch.float64)
    torch.testing.assert_close(a[-5:] + b[:5], torch.ones(5, dtype=torch.float64))
    assert (a > 0).all() and (b > 0).all() and a[0] == 1


@pytest.mark.parametrize(
    ("tile", "overlap", "scale"),
    [((4, 16, 16), (2, 4, 4), 4), ((5, 13, 7), (1, 3, 2), 2), ((0, 8, 0), (0, 2, 0), 1), ((3, 0, 0), (2, 0, 0), 4)],
)
def test_tiled_equals_untiled_exactly_for_a_per_pixel_model(tile, overlap, scale):
    frames = _video(11, 29, 31)
    run = pixelwise(scale)
    whole = _restore(run, frames, scale, (0, 0, 0), (0, 0, 0))
    tiled = _restore(run, frames, scale, tile, overlap)
    assert sorted(tiled) == list(range(11))
    for i in range(11):
        assert torch.equal(tiled[i], whole[i]), i


@pytest.mark.parametrize("total", [1, 4, 7, 10, 11, 23])
def test_window_schedule_with_unknown_length_matches_the_official_list(total):
    sched = WindowSchedule(6, 2)
    official = list(range(0, total - 6, 4)) + [max(0, total - 6)]
    starts, s = [], 0
    while s is not None:
        starts.append(s)
        s = sched.next_start(s, total)
    assert starts == official
    # streaming: each window sees frames until the next start is known
    seen = []
    run = lambda x: (seen.append(x.shape[1]), x[:, :, :3])[1]  # noqa: E731
    out = _restore(run, _video(total, 4, 4), 1, (6, 0, 0), (2, 0, 0))
    assert sorted(out) == list(range(total)) and len(seen) == len(official)


def test_resume_reproduces_an_uninterrupted_run():
    frames = _video(17, 9, 10, seed=3)
    sched = WindowSchedule(5, 2)
    full = _restore(temporal_mixer, frames, 1, (5, 6, 6), (2, 2, 2))
    for done in (1, 4, 7, 12, 16):
        first = sched.first_window_for(done)
        part = _restore(temporal_mixer, frames[first:], 1, (5, 6, 6), (2, 2, 2), first_frame=first, skip_until=done)
        assert sorted(part) == list(range(done, 17))
        for i in part:
            assert torch.equal(part[i], full[i]), (done, i)


def test_frames_are_pulled_lazily():
    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield torch.zeros(3, 4, 4)

    gen = restore_frames(pixelwise(1), source(), scale=1, tile=(8, 0, 0), overlap=(2, 0, 0))
    first = next(gen)
    assert first[0] == 0 and len(pulled) <= 8 + 6
    for _ in range(100):
        next(gen)
    assert len(pulled) <= 100 + 8 + 6 + 1


def _raised_cosine(length: int, fade_in: int, fade_out: int) -> np.ndarray:
    """The blend profile written out independently of the code: sin^2 rise, cos^2 fall, at sample centres."""
    w = np.ones(length)
    w[:fade_in] = np.sin(0.5 * np.pi * (np.arange(fade_in) + 0.5) / fade_in) ** 2
    if fade_out:
        w[length - fade_out :] *= np.cos(0.5 * np.pi * (np.arange(fade_out) + 0.5) / fade_out) ** 2
    return w


def _axis_weights(size: int, tile: int, overlap: int, scale: int) -> list[tuple[int, np.ndarray]]:
    """``(first output index, weights)`` of each tile along one axis: the official starts (a regular
    stride, the last tile flush with the end), each tile fading in over its overlap with the previous
    tile and out over its overlap with the next one (in output samples)."""
    if tile <= 0 or tile >= size:
        return [(0, np.ones(size * scale))]
    starts = list(range(0, size - tile, tile - overlap)) + [size - tile]
    out = []
    for k, a in enumerate(starts):
        fade_in = starts[k - 1] + tile - a if k else 0
        fade_out = a + tile - starts[k + 1] if k + 1 < len(starts) else 0
        out.append((a * scale, _raised_cosine(tile * scale, fade_in * scale, fade_out * scale)))
    return out


def _tile_value(t0: int, y0: int, x0: int) -> float:
    return float(np.sin(1.0 + 0.9 * t0 + 0.37 * y0 + 0.071 * x0))  # distinct for every tile of these cases


def position_model(scale: int):
    """A model returning one constant per tile, a function of where the tile starts: input channels
    0, 1, 2 hold each pixel's row, column and frame number, so the tile's first pixel tells its origin."""

    def run(x):
        y0, x0, t0 = (int(v) for v in x[0, 0, :3, 0, 0].round())
        _, t, _, h, w = x.shape
        return torch.full((1, t, 3, h * scale, w * scale), _tile_value(t0, y0, x0))

    return run


def _coordinates(t: int, h: int, w: int) -> torch.Tensor:
    tt, yy, xx = torch.meshgrid(torch.arange(t), torch.arange(h), torch.arange(w), indexing="ij")
    return torch.stack([yy, xx, tt], 1).float()


@pytest.mark.parametrize(
    ("shape", "tile", "overlap", "scale"),
    [
        ((11, 29, 31), (5, 13, 7), (1, 3, 2), 2),  # a last tile/window that overlaps more than the rest
        ((9, 12, 20), (4, 5, 8), (2, 3, 4), 1),  # three tiles overlap where the last one is flush
        ((7, 20, 23), (0, 8, 10), (0, 4, 6), 4),  # spatial tiles only, x4 output
        ((10, 6, 6), (4, 0, 0), (2, 0, 0), 3),  # temporal windows only
    ],
)
def test_blend_is_the_raised_cosine_mean_of_the_tiles(shape, tile, overlap, scale):
    """Every output pixel is the weighted mean of the constants of the tiles covering it, with the
    raised-cosine weights of the window times those of the rows times those of the columns."""
    t, h, w = shape
    got = _restore(position_model(scale), _coordinates(t, h, w), scale, tile, overlap)
    num = np.zeros((t, h * scale, w * scale))
    den = np.zeros_like(num)
    for t0, wt in _axis_weights(t, tile[0], overlap[0], 1):
        for y0, wy in _axis_weights(h, tile[1], overlap[1], scale):
            for x0, wx in _axis_weights(w, tile[2], overlap[2], scale):
                weight = wt[:, None, None] * wy[None, :, None] * wx[None, None, :]
                region = np.s_[t0 : t0 + len(wt), y0 : y0 + len(wy), x0 : x0 + len(wx)]
                num[region] += weight * _tile_value(t0, y0 // scale, x0 // scale)
                den[region] += weight
    expected = torch.from_numpy(num / den).float()
    assert sorted(got) == list(range(t))
    for i in range(t):
        assert got[i].shape == (3, h * scale, w * scale)
        torch.testing.assert_close(got[i], expected[i].expand(3, -1, -1), rtol=0, atol=1e-6)


def test_crossfade_is_the_raised_cosine():
    for length, fin, fout in [(12, 0, 5), (12, 5, 0), (8, 3, 4), (6, 6, 6), (40, 16, 8)]:
        expected = torch.from_numpy(_raised_cosine(length, fin, fout))
        torch.testing.assert_close(crossfade(length, fin, fout, dtype=torch.float64), expected, rtol=0, atol=1e-15)


def test_tile_grid_covers_every_pixel_once_without_fades_at_the_border():
    grid = TileGrid(30, 41, (16, 16), (4, 4))
    cover = torch.zeros(30, 41)
    for t in grid:
        cover[t.h0 : t.h1, t.w0 : t.w1] += 1
        assert (t.fade_top == 0) == (t.h0 == 0) and (t.fade_right == 0) == (t.w1 == 41)
    assert cover.min() >= 1


def test_rvrt_tiled_is_close_to_untiled(rvrt_meta):
    model = tiny_rvrt(rvrt_meta, "tiny_sr")
    run = model_runner(model, device=torch.device("cpu"), dtype=torch.float32)
    t, h, w = 2, 40, 48
    yy, xx = torch.meshgrid(torch.arange(h).float(), torch.arange(w).float(), indexing="ij")
    frames = torch.stack(
        [
            torch.stack(
                [
                    0.5 + 0.2 * torch.sin(0.3 * (xx + 0.35 * i) + c) * torch.cos(0.23 * (yy - 0.2 * i) - c)
                    for c in range(3)
                ]
            )
            for i in range(t)
        ]
    )
    whole = _restore(run, frames, 4, (0, 0, 0), (0, 0, 0))
    tiled = _restore(run, frames, 4, (0, 40, 36), (0, 0, 16))  # two tiles side by side
    err = torch.stack([tiled[i] - whole[i] for i in range(t)]).abs()
    net = torch.stack([whole[i] for i in range(t)]) - torch.nn.functional.interpolate(
        frames, scale_factor=4, mode="bilinear"
    )
    # each tile sees other borders, so RVRT (random weights here) differs a little; the blend keeps it a
    # small fraction of what the network adds to the upsampled input. Measured: 0.0976 of it overall and
    # 0.0114 mean error in the overlap (output columns 48-144); a hard seam where the last tile wins
    # gives 0.145 and 0.032, plain averaging 0.147 and 0.033. Bounds: the measurements + 13-15 %.
    ratio = (err.mean() / net.abs().mean()).item()
    in_overlap = err[..., 12 * 4 : 36 * 4].mean().item()
    assert ratio < 0.11 and in_overlap < 0.013, (ratio, in_overlap)


def test_out_of_memory_retries_the_window_with_the_tile_the_handler_gives():
    sizes = []

    def picky(x):  # pretend tiles above 64 x 64 input pixels do not fit
        sizes.append(tuple(x.shape[-2:]))
        if x.shape[-2] * x.shape[-1] > 64 * 64:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return pixelwise(2)(x)

    asked = []

    def smaller(spatial, h, w, err):
        asked.append((spatial, h, w))
        return (64, 64)

    frames = _video(5, 150, 130)
    # windows of 3 frames overlapping by 1: the first window fails halfway (after no tile) and the
    # second one starts where frames are shared, so the undo of a failed window is exercised
    out = _restore(picky, frames, 2, (3, 0, 0), (1, 8, 8), on_oom=smaller)
    whole = _restore(pixelwise(2), frames, 2, (0, 0, 0), (0, 0, 0))
    assert sorted(out) == list(range(5)) and all(torch.equal(out[i], whole[i]) for i in whole)
    assert asked == [((0, 0), 150, 130)]  # once: the smaller tile is kept for the next windows
    assert sizes[0] == (150, 130) and max(h * w for h, w in sizes[1:]) <= 64 * 64
    with pytest.raises(torch.OutOfMemoryError):
        _restore(picky, frames, 2, (0, 0, 0), (0, 8, 8))


def test_a_window_that_fails_after_some_tiles_is_undone_before_the_retry():
    def counter(start: int, fail_at: int | None = None):
        calls = {"n": start}

        def run(x):  # every call returns its own number: a tile counted twice would show
            calls["n"] += 1
            if calls["n"] == fail_at:
                raise RuntimeError("DefaultCPUAllocator: can't allocate memory: you tried to allocate 10 bytes")
            return torch.full_like(x[:, :, :3], float(calls["n"]))

        return run

    frames = _video(2, 40, 40)
    # calls 1 and 2 blend two tiles, call 3 fails: the retry's calls 4, 5, ... must be all there is
    out = _restore(counter(0, fail_at=3), frames, 1, (0, 24, 24), (0, 8, 8), on_oom=lambda s, h, w, e: (24, 24))
    clean = _restore(counter(3), frames, 1, (0, 24, 24), (0, 8, 8))
    assert all(torch.equal(out[i], clean[i]) for i in clean)
