"""``--tile auto`` and the out-of-memory back-off through the public ``rvrt.restore`` and ``rvrt restore``.

The free memory the runner plans with (``runner.available_memory``) is patched, so the plans do
not depend on this machine; the model call is replaced by a per-pixel function (the same value
for a pixel whatever tile holds it), so a tiled run must give the untiled output up to the float
rounding of the blend (the crossfades sum to one): within one level of the 16-bit PNGs written.
The planner itself, the stages and the runner are the real ones; the architecture is the tiny x4
RVRT (its memory model sizes the tiles).
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import rvrt
from conftest import TINY_SR
from media import smooth_frames
from rvrt.cli import main
from rvrt.inference import runner, stages
from rvrt.media.images import read_image, write_png

H, W, N = 120, 160, 3  # 3 frames: one temporal window, so the plans differ in their spatial tiles
QUIET = dict(bit_depth=16, progress=False)
_MIX = torch.tensor([[0.9, 0.3, -0.2], [-0.3, 1.1, 0.2], [0.2, -0.4, 1.0]])


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("auto") / "clip"
    folder.mkdir()
    for i, img in enumerate(smooth_frames(N, W, H)):
        write_png(folder / f"f{i}.png", img)
    return folder


@pytest.fixture(autouse=True)
def _same_memory_model(monkeypatch):
    # the CLI sets THP_MEM_ALLOC_ENABLE (the memory model then drops its 1.5x margin): the same for all
    monkeypatch.setenv("THP_MEM_ALLOC_ENABLE", "1")


def _per_pixel(x: torch.Tensor, scale: int) -> torch.Tensor:
    """``(1, T, C, h, w) -> (1, T, 3, s*h, s*w)``: a colour mix through a sigmoid, each pixel repeated ``s x s``."""
    y = torch.sigmoid(3 * (torch.einsum("oc,ntchw->ntohw", _MIX, x[:, :, :3]) - 0.4))
    return y.repeat_interleave(scale, -2).repeat_interleave(scale, -1)


class FakeModel:
    """Replaces ``stages.model_runner``: records the tile of every call; with ``oom_above``, tiles of
    more input pixels raise ``torch.OutOfMemoryError`` (as CUDA's allocator does)."""

    def __init__(self, monkeypatch, oom_above: int | None = None) -> None:
        self.calls: list[tuple[int, int]] = []
        self.ooms = 0
        self.oom_above = oom_above
        monkeypatch.setattr(stages, "model_runner", self.runner)

    def runner(self, model, *, device, dtype, extra_channel=None, compile=False):
        scale = model.config.upscale

        def run(x: torch.Tensor) -> torch.Tensor:
            self.calls.append(tuple(x.shape[-2:]))
            if self.oom_above is not None and x.shape[-2] * x.shape[-1] > self.oom_above:
                self.ooms += 1
                if self.ooms > 10:  # a back-off that does not shrink the tile would loop forever
                    raise AssertionError(f"out of memory {self.ooms} times; tiles tried: {self.calls}")
                raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 1.00 GiB")
            return _per_pixel(x.to(device, torch.float32), scale)

        return run


class Plans:
    """Records the plans (and the budgets they were made for) of ``stages.plan_stage``."""

    def __init__(self, monkeypatch) -> None:
        self.made: list = []
        real = stages.plan_stage

        def plan_stage(*args, **kwargs):
            plan = real(*args, **kwargs)
            self.made.append(plan)
            return plan

        monkeypatch.setattr(stages, "plan_stage", plan_stage)


def _free_memory(monkeypatch, nbytes: int) -> None:
    monkeypatch.setattr(runner, "available_memory", lambda device: int(nbytes))


def _pngs(folder: Path) -> list[np.ndarray]:
    return [read_image(p)[0].astype(np.int64) for p in sorted(folder.glob("*.png"))]


def _assert_same_frames(got: Path, want: Path) -> None:
    a, b = _pngs(got), _pngs(want)
    assert len(a) == len(b) == N
    for x, y in zip(a, b, strict=True):
        assert x.shape == y.shape == (4 * H, 4 * W, 3)
        assert np.abs(x - y).max() <= 1  # one level of 65535: the blend's float rounding


@pytest.fixture
def untiled(clip, tiny_sr_weights, tmp_path, monkeypatch) -> Path:
    """The clip restored in whole frames (a given tile) by the per-pixel model, 16-bit PNGs."""
    with monkeypatch.context() as m:
        FakeModel(m)
        out = tmp_path / "untiled"
        summary = rvrt.restore(clip, out, weights=tiny_sr_weights, device="cpu", tile=(0, 0, 0), **QUIET)
    assert summary.tile.startswith("0 0 0 (")
    return out


def _whole_frame_bytes(clip, weights, tmp_path, monkeypatch) -> int:
    """The memory model's prediction for whole frames, from a plan made with plenty of memory."""
    with monkeypatch.context() as m:
        plans = Plans(m)
        FakeModel(m)
        _free_memory(m, 1 << 50)
        rvrt.restore(clip, tmp_path / "probe", weights=weights, device="cpu", **QUIET)
    (plan,) = plans.made
    assert plan.auto and plan.tile == (0, 0, 0), plan  # plenty of memory: whole frames, one window
    return plan.predicted_bytes


def test_auto_plans_whole_frames_when_they_fit_and_tiles_when_they_do_not(
    clip, tiny_sr_weights, untiled, tmp_path, monkeypatch
):
    whole = _whole_frame_bytes(clip, tiny_sr_weights, tmp_path, monkeypatch)
    free = 2 * (whole - 1)  # the default memory_fraction 0.5 leaves a byte less than whole frames need
    plans = Plans(monkeypatch)
    model = FakeModel(monkeypatch)
    _free_memory(monkeypatch, free)
    summary = rvrt.restore(clip, tmp_path / "tiled", weights=tiny_sr_weights, device="cpu", **QUIET)
    (plan,) = plans.made
    assert plan.budget == free // 2  # the patched free memory is what the plan was made for
    assert plan.auto and plan.predicted_bytes <= plan.budget < whole
    th, tw = plan.spatial
    assert plan.tile[0] == 0 and (0 < th < H or 0 < tw < W), plan  # spatial tiles, still one window
    assert summary.tile.startswith(f"0 {th} {tw} (overlap 2 20 20; auto")
    # here whole rows, 128 of the 160 columns: two tiles per window, every call within the tile
    assert len(model.calls) > 1 and all(h <= (th or H) and w <= (tw or W) for h, w in model.calls)
    _assert_same_frames(tmp_path / "tiled", untiled)


def test_auto_tiles_shrink_with_the_memory(clip, tiny_sr_weights, untiled, tmp_path, monkeypatch):
    """Less memory, smaller tiles: a budget below what 96-pixel tiles need gives 64-pixel tiles.

    The two needs are computed as the planner does (model peak plus the runner's buffers, one
    3-frame window with the model's overlap of 2 frames)."""
    from rvrt.inference.memory import model_peak_bytes
    from rvrt.inference.planner import runner_bytes

    cfg = rvrt.RVRT(**TINY_SR).config  # the model of tiny_sr_weights
    need = {s: model_peak_bytes("rvrt", cfg, N, s, s) + runner_bytes(N, 2, H, W, s, s, 4, 3) for s in (64, 96)}
    assert need[64] < need[96]
    plans = Plans(monkeypatch)
    FakeModel(monkeypatch)
    _free_memory(monkeypatch, need[64] + need[96])  # budget: half way between the two
    rvrt.restore(clip, tmp_path / "small", weights=tiny_sr_weights, device="cpu", **QUIET)
    (plan,) = plans.made
    assert plan.tile == (0, 64, 64) and plan.predicted_bytes <= plan.budget, plan
    _assert_same_frames(tmp_path / "small", untiled)


def test_auto_through_the_command_line(clip, tiny_sr_weights, untiled, tmp_path, monkeypatch):
    whole = _whole_frame_bytes(clip, tiny_sr_weights, tmp_path, monkeypatch)
    plans = Plans(monkeypatch)
    FakeModel(monkeypatch)
    _free_memory(monkeypatch, whole - 1)  # --memory-fraction 1: the whole free memory, a byte short
    out = tmp_path / "cli"
    argv = ["restore", str(clip), "-o", str(out), "--weights", str(tiny_sr_weights), "--device", "cpu"]
    assert main([*argv, "--tile", "auto", "--memory-fraction", "1", "--bit-depth", "16", "--quiet"]) == 0
    (plan,) = plans.made
    assert plan.auto and plan.budget == whole - 1 and plan.spatial != (0, 0), plan
    _assert_same_frames(out, untiled)


OOM_STEPS = [((H, W), (112, 112)), ((112, 112), (72, 72)), ((72, 72), (64, 64))]


def _backoff_warnings(caplog) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    pattern = r"out of memory with tiles of (\d+)x(\d+) pixels \(OutOfMemoryError\); continuing with (\d+)x(\d+)"
    found = [re.fullmatch(pattern, r.getMessage()) for r in caplog.records if "out of memory" in r.getMessage()]
    assert all(found), [r.getMessage() for r in caplog.records]
    return [((int(a), int(b)), (int(c), int(d))) for a, b, c, d in (m.groups() for m in found)]


def test_out_of_memory_backs_off_to_smaller_tiles_through_restore(
    clip, tiny_sr_weights, untiled, tmp_path, monkeypatch, caplog
):
    """Whole frames planned (plenty of memory reported), but calls above 64x64 pixels fail: the run
    says so at each step, goes down to 64-pixel tiles and writes the untiled result."""
    _free_memory(monkeypatch, 1 << 50)
    model = FakeModel(monkeypatch, oom_above=64 * 64)
    with caplog.at_level(logging.WARNING):
        summary = rvrt.restore(clip, tmp_path / "oom", weights=tiny_sr_weights, device="cpu", **QUIET)
    assert _backoff_warnings(caplog) == OOM_STEPS
    assert model.ooms == 3 and model.calls[:3] == [(H, W), (112, 112), (72, 72)]
    assert summary.frames == N and summary.tile.startswith("0 64 64 (")
    _assert_same_frames(tmp_path / "oom", untiled)


def test_out_of_memory_backs_off_through_the_command_line(
    clip, tiny_sr_weights, untiled, tmp_path, monkeypatch, caplog
):
    _free_memory(monkeypatch, 1 << 50)
    FakeModel(monkeypatch, oom_above=100 * 100)
    out = tmp_path / "cli_oom"
    argv = ["restore", str(clip), "-o", str(out), "--weights", str(tiny_sr_weights), "--device", "cpu"]
    with caplog.at_level(logging.WARNING):
        assert main([*argv, "--bit-depth", "16", "--quiet"]) == 0
    assert _backoff_warnings(caplog) == OOM_STEPS[:2]  # 72x72 tiles fit under 100x100 pixels
    _assert_same_frames(out, untiled)
