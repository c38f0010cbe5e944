"""Progress a person can read: output frames, moving while the model works inside a window.

A temporal window of 30 frames takes minutes on a CPU. The bar therefore does not wait for the
window to finish: the model reports from inside its loop (each propagation step of RVRT, each stage
of VRT, each spatial tile), and the bar moves through the frames the window will make final. The
rate and the remaining time are the average since the start (not a short-term estimate that
jumps with every window), and the total is exact when the input says how many frames it holds.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator

from torch import nn

__all__ = ["Progress", "ProgressCallback", "model_tracker"]

#: ``callback(desc, done, total)``: ``done`` output frames (a float: it moves inside a window) of
#: ``total`` (None when unknown) for the work named ``desc`` ("restore", "scene cuts", ...)
ProgressCallback = Callable[[str, float, "int | None"], None]


class Progress:
    """A progress bar on stderr counting output frames (``enabled=False``: silent, no cost).

    Args:
        total: output frames expected, or None when unknown (the bar then counts up).
        desc: label before the bar.
        enabled: show it; or a :data:`ProgressCallback` told instead of a bar (a program's own
            display, e.g. the web page of ``rvrt ui``). An exception it raises stops the run there.
        initial: frames already done before this run (a resumed run).
    """

    def __init__(
        self, total: int | None, desc: str, *, enabled: bool | ProgressCallback = True, initial: int = 0
    ) -> None:
        self.done = float(initial)
        self._pos = float(initial)
        self.total = total
        self.desc = desc
        self._bar = None
        self._callback = enabled if callable(enabled) else None
        if self._callback is not None:
            self._callback(desc, self._pos, total)
        elif enabled:
            from tqdm import tqdm

            fmt = (
                "{desc}: {percentage:3.0f}%|{bar}| {n:.1f}/{total_fmt} frames [{elapsed}<{remaining}, {rate_fmt}]"
                if total
                else "{desc}: {n:.1f} frames [{elapsed}, {rate_fmt}]"
            )
            self._bar = tqdm(
                total=total,
                initial=initial,
                desc=desc,
                unit="frame",
                bar_format=fmt,
                dynamic_ncols=True,
                leave=False,
                smoothing=0,  # the average rate since the start: windows make the instant rate jump
                file=sys.stderr,
                mininterval=0.5,
            )

    def _move(self, pos: float) -> None:
        if self.total:
            pos = min(pos, float(self.total))
        if pos > self._pos:
            if self._bar is not None:
                self._bar.update(pos - self._pos)
            self._pos = pos
            if self._callback is not None:
                self._callback(self.desc, pos, self.total)

    def advance(self, frames: int = 1) -> None:
        """``frames`` more output frames are written."""
        self.done += frames
        self._move(self.done)

    def inside(self, fraction: float, frames: float) -> None:
        """The work in progress is ``fraction`` done and will make ``frames`` more output frames final."""
        self._move(self.done + max(0.0, min(fraction, 1.0)) * frames)

    def at(self, frames: float) -> None:
        """``frames`` (a float) of the work since the last :meth:`advance` are done."""
        self._move(self.done + max(0.0, frames))

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def _units_rvrt(model: nn.Module, shape: tuple[int, ...]) -> list[nn.Module] | None:
    """The modules RVRT and RVRT Light call once per step: feature extraction and reconstruction per
    chunk, one backbone per clip and branch."""
    return [*model.backbone.values(), model.feat_extract, model.reconstruction]


def _units_vrt(model: nn.Module, shape: tuple[int, ...]) -> list[nn.Module]:
    return [getattr(model, f"stage{i}") for i in range(1, 8)] + list(model.stage8)


def _expected_calls(model: nn.Module, shape: tuple[int, ...]) -> int:
    """How many calls of the tracked modules one forward of an input of ``shape`` makes."""
    from rvrt.models.layers import frame_chunks

    n, t, _, h, w = shape
    if hasattr(model, "stage8"):
        return 7 + len(model.stage8)
    tp, hp, wp = model.padded_size(t, h, w)
    clips = max(tp // 2, 1)
    clip = -(-tp // clips)
    dim = model.config.embed_dims[0]
    f = model.config.feature_stride  # x1 (deblurring/denoising) features are at 1/4 resolution
    steps = getattr(model.config, "recurrent_feature_refinement_steps", 4)
    extract = len(frame_chunks(tp, n * hp * wp * dim, multiple=clip))
    recon = len(frame_chunks(tp, n * (hp // f) * (wp // f) * 5 * dim, multiple=clip))
    return extract + steps * clips + recon


def model_tracker(model: nn.Module) -> Callable[[Callable[[float], None]], contextlib.AbstractContextManager] | None:
    """A tracker for :func:`rvrt.inference.temporal.restore_frames`: while active, ``callback``
    receives the fraction of the current forward call done. None for models it does not know."""
    if hasattr(model, "backbone") and hasattr(model, "reconstruction"):
        units = _units_rvrt
    elif hasattr(model, "stage1") and hasattr(model, "stage8"):
        units = _units_vrt
    else:
        return None

    @contextlib.contextmanager
    def track(callback: Callable[[float], None]) -> Iterator[None]:
        state = {"calls": 0, "expected": 1}

        def start(module, args):
            state["calls"] = 0
            state["expected"] = max(_expected_calls(model, tuple(args[0].shape)), 1)

        def step(module, args, output):
            state["calls"] += 1
            callback(min(state["calls"] / state["expected"], 1.0))

        handles = [model.register_forward_pre_hook(start)]
        handles += [m.register_forward_hook(step) for m in units(model, ())]
        try:
            yield
        finally:
            for h in handles:
                h.remove()

    return track
