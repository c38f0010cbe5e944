"""Tiling and streaming: exact for per-pixel models, close for RVRT, bounded, resumable."""

from __future__ import annotations

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
    # small fraction of what the network adds to the upsampled input
    assert err.mean() < 0.25 * net.abs().mean()


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
