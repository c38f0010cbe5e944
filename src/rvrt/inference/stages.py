"""Model stages of the runner: restoration (temporal windows) and frame interpolation (doubling).

A stage turns a stream of frames into a stream of frames. It knows its model, its tiles, how
many output frames it makes of ``n`` input frames, and where a resumed run must start reading
so that its outputs from a given frame on are exactly those of an uninterrupted run
(:meth:`Stage.input_for`). The runner chains stages: restore, then interpolate, is space-time
super-resolution.

Scene cuts (:attr:`Stage.cuts`) split the stream into shots that a stage processes one by one,
each as if it were a video of its own: restoration windows never straddle a cut (the recurrence
starts afresh in each shot, and no blend mixes two shots), and interpolation holds the last frame
of a shot instead of inventing a frame between two shots.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace

import torch
from torch import nn

from rvrt import zoo
from rvrt.errors import InputError, InsufficientMemoryError
from rvrt.inference.compiling import compile_settings, compiled_model
from rvrt.inference.options import StageOptions, flag
from rvrt.inference.planner import Plan, balanced_frames, plan_stage, smaller_tile
from rvrt.inference.progress import model_tracker
from rvrt.inference.temporal import WindowSchedule, restore_frames
from rvrt.inference.vfi import interpolate_frames, resume_input_frame, vfi_window
from rvrt.media.scenes import shots_of

__all__ = ["Stage", "RestoreStage", "InterpolateStage", "build_stage", "model_runner", "weights_digest"]

log = logging.getLogger(__name__)


def model_runner(
    model: nn.Module,
    *,
    device: torch.device,
    dtype: torch.dtype,
    extra_channel: float | None = None,
    compile: bool | str = False,
) -> Callable[[torch.Tensor], torch.Tensor]:
    """Wrap a model for the stages: moves a window to ``device``, runs it under
    ``torch.inference_mode`` (with autocast for half precision) and returns float32.

    Args:
        extra_channel: append a constant channel with this value (the sigma map of non-blind
            denoising models, ``sigma / 255``).
        compile: run the model's repeated blocks through ``torch.compile`` (``True``, or the name
            of a backend; see :mod:`rvrt.inference.compiling`). Tiles of one size share one
            compiled graph per block; border tiles of other sizes compile once more. A compile
            that fails falls back to the eager model with one warning (unless a backend was named).

    Raises:
        InputError: ``compile=True`` on a CPU (refused: slow to compile, no faster), an unknown backend.
    """
    autocast = dtype in (torch.float16, torch.bfloat16)
    settings = compile_settings(compile, device)
    if settings is not None:
        model = compiled_model(model, settings, device)

    def run(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device, torch.float32)
        if extra_channel is not None:
            x = torch.cat([x, x.new_full((*x.shape[:2], 1, *x.shape[3:]), extra_channel)], 2)
        with torch.inference_mode(), torch.autocast(device.type, dtype=dtype, enabled=autocast):
            y = model(x)
        return y.float()

    return run


def weights_digest(model: nn.Module) -> str:
    """sha256 of a model's parameters and buffers (names, shapes, dtypes, values): which weights ran."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        t = t.detach().to("cpu").contiguous()
        h.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


@dataclass
class Stage:
    """A model stage; see the module doc. Subclasses: :class:`RestoreStage`, :class:`InterpolateStage`."""

    options: StageOptions
    net: nn.Module
    spec: zoo.ModelSpec
    plan: Plan
    device: torch.device
    dtype: torch.dtype
    compile: bool | str = False
    index: int = 0
    on_plan_change: Callable[[Stage], None] | None = None

    scale: int = 1  # output size / input size
    time_factor: int = 1  # output frames per input frame
    #: input frames of this stage that start a new shot (sorted, each in 1 .. total - 1)
    cuts: tuple[int, ...] = ()
    #: input frames of the run, if known
    total: int | None = None

    @property
    def name(self) -> str:
        return self.spec.name

    def output_count(self, frames: int) -> int:
        raise NotImplementedError

    def input_for(self, out_index: int) -> int:
        """The first input frame a run must read to produce outputs ``out_index, ...`` exactly."""
        tf = self.time_factor
        first, end = next((a, b) for a, b in reversed(shots_of(self.cuts, self.total)) if tf * a <= out_index)
        return first + self._input_for(out_index - tf * first, None if end is None else end - first)

    def process(
        self,
        frames: Iterable[torch.Tensor],
        *,
        first: int,
        skip_until: int,
        total: int | None,
        progress: Callable[[float, int], None] | None,
    ) -> Iterator[tuple[int, torch.Tensor]]:
        """Output frames ``(index, (3, H', W') float)`` from ``skip_until`` on, reading input from ``first``
        (a frame :meth:`input_for` gave), shot by shot."""
        tf = self.time_factor
        frames = iter(self._prepare(frames, first))
        shots = shots_of(self.cuts, total)
        for k, (a, b) in enumerate(shots):
            if b is not None and b <= first:
                continue  # before this run's first frame: not in ``frames``
            begin = max(first, a)
            if b is not None and tf * b <= skip_until:
                for _ in itertools.islice(frames, b - begin):  # all its outputs exist
                    pass
                continue
            shot = itertools.islice(frames, None if b is None else b - begin)
            n = None if b is None else b - a
            out = self._process(shot, first=begin - a, skip_until=max(0, skip_until - tf * a), total=n,
                                progress=progress, last=k == len(shots) - 1)  # fmt: skip
            for i, f in out:
                yield tf * a + i, f

    def _prepare(self, frames: Iterable[torch.Tensor], first: int) -> Iterable[torch.Tensor]:
        """The input as the model sees it (frame ``first`` first)."""
        return frames

    def _input_for(self, out_index: int, total: int | None) -> int:
        """:meth:`input_for` within one shot of ``total`` frames (numbered from 0)."""
        raise NotImplementedError

    def _process(self, frames, *, first, skip_until, total, progress, last):
        """:meth:`process` of one shot of ``total`` frames (numbered from 0); ``last``: the last shot."""
        raise NotImplementedError

    def fingerprint(self) -> dict:
        """What of this stage determines the output's pixels."""
        o = self.options
        p = f"stage{self.index}."
        return {
            p + "kind": o.kind,
            p + "model": self.spec.name,
            p + "config": json.dumps(self.spec.kwargs, sort_keys=True),
            p + "weights": weights_digest(self.net)[:16],
            p + "tile": o.tile if o.tile == "auto" else list(o.tile),
            p + "tile_overlap": list(self.plan.overlap),
            p + "sigma": o.sigma,
            p + "add_noise": o.add_noise,
            p + "seed": o.seed if o.add_noise else None,
            p + "hold_last": o.hold_last if o.kind == "interpolate" else None,
        }

    def describe(self) -> str:
        return f"{self.spec.name}: tile {self.plan.describe()}"

    def _runner(self, extra_channel: float | None = None):
        self.net.to(self.device)
        return model_runner(
            self.net, device=self.device, dtype=self.dtype, extra_channel=extra_channel, compile=self.compile
        )

    def _on_oom(self, spatial: tuple[int, int], h: int, w: int, err: BaseException) -> tuple[int, int]:
        """A smaller spatial tile after an out-of-memory error (said once), or a one-line error."""
        if not self.plan.auto:
            raise InsufficientMemoryError(
                f"out of memory on {self.device} with the tile you gave ({' '.join(map(str, self.plan.tile))}); "
                "use a smaller --tile, or --tile auto"
            ) from err
        smaller = smaller_tile(self.plan, spatial, h, w)
        if smaller is None:
            need = self.plan.predicted_bytes
            raise InsufficientMemoryError(
                f"out of memory on {self.device} even with tiles of {spatial[0] or h}x{spatial[1] or w} pixels; "
                f"{self.spec.name} needs about {need / 2**30:.1f} GB for them at {str(self.dtype)[6:]} "
                "(free memory, use a smaller --tile, or --dtype bf16)"
            ) from err
        log.warning(
            "out of memory with tiles of %sx%s pixels (%s); continuing with %sx%s",
            spatial[0] or h,
            spatial[1] or w,
            type(err).__name__,
            smaller[0] or h,
            smaller[1] or w,
        )
        self.plan = self.plan.with_spatial(smaller)
        if self.on_plan_change is not None:
            self.on_plan_change(self)
        return smaller


@dataclass
class RestoreStage(Stage):
    """Restoration in temporal windows (:func:`rvrt.inference.temporal.restore_frames`)."""

    sigma_map: float | None = None

    def output_count(self, frames: int) -> int:
        return frames

    def _frames_for(self, total: int | None) -> int:
        """Frames per window in a shot of ``total`` frames: the plan's; with scene cuts and an
        ``auto`` plan, a shorter shot is one window and a longer one is spread evenly."""
        t = self.plan.tile[0]
        if not (self.cuts and self.plan.auto and t and total is not None):
            return t
        return 0 if total <= t else balanced_frames(total, t, self.plan.overlap[0])

    def _input_for(self, out_index: int, total: int | None) -> int:
        t = self._frames_for(total)
        return WindowSchedule(t, self.plan.overlap[0] if t else 0).replay_from(out_index)

    def _prepare(self, frames, first):
        o = self.options
        return _noisy(frames, o.sigma, o.seed, first) if o.add_noise else frames

    def _process(self, frames, *, first, skip_until, total, progress, last):
        run = self._runner(self.sigma_map)
        tracker = None if self.compile else model_tracker(self.net)
        return restore_frames(
            run,
            frames,
            scale=self.scale,
            tile=(self._frames_for(total), *self.plan.tile[1:]),
            overlap=self.plan.overlap,
            device=self.device,
            total=total,
            first_frame=first,
            skip_until=skip_until,
            on_oom=self._on_oom,
            progress=progress,
            tracker=tracker,
        )


@dataclass
class InterpolateStage(Stage):
    """Frame-rate doubling (:func:`rvrt.inference.vfi.interpolate_frames`)."""

    window: int = 4

    def output_count(self, frames: int) -> int:
        return 2 * frames - (0 if self.options.hold_last else 1)

    def _input_for(self, out_index: int, total: int | None) -> int:
        return resume_input_frame(out_index, self.window)

    def _process(self, frames, *, first, skip_until, total, progress, last):
        run = self._runner()
        return interpolate_frames(
            run,
            frames,
            window=self.window,
            tile=self.plan.tile,
            overlap=self.plan.overlap,
            device=self.device,
            first_frame=first,
            skip_until=skip_until,
            hold_last=self.options.hold_last or not last,  # a shot before a cut ends on its last frame held
            single=bool(self.cuts),
            progress=progress,
        )


def _noisy(frames: Iterable[torch.Tensor], sigma: float, seed: int, first: int) -> Iterator[torch.Tensor]:
    # one generator per frame index: the same noise whatever the tiling, and on resume
    for i, f in enumerate(frames, start=first):
        g = torch.Generator().manual_seed(seed * 1_000_003 + i)
        yield f + torch.randn(f.shape, generator=g) * (sigma / 255.0)


def _check_sigma(spec: zoo.ModelSpec, o: StageOptions) -> float | None:
    """The sigma map value of a non-blind denoiser, after checking the noise options fit the model."""
    needs_sigma = spec.in_channels == 4
    if needs_sigma and o.sigma is None:
        raise InputError(f"{spec.name} is a non-blind denoiser: pass {flag('sigma', o.prefix)} (noise level, 0..255)")
    if o.add_noise and o.sigma is None:
        raise InputError(f"{flag('add_noise', o.prefix)} needs {flag('sigma', o.prefix)} (the noise level to add)")
    if o.sigma is not None and not needs_sigma and not o.add_noise:
        raise InputError(
            f"{flag('sigma', o.prefix)} only applies to denoising models or with {flag('add_noise', o.prefix)}; "
            f"{spec.name} is a {spec.task} model"
        )
    return o.sigma / 255.0 if needs_sigma else None


def _fixed_tile(
    options: StageOptions,
    net: nn.Module,
    tile: tuple[int, int, int],
    *,
    height: int,
    width: int,
    total: int | None,
    dtype: torch.dtype,
    compile: bool | str,
) -> StageOptions:
    """The stage options with the tile of an ONNX graph (:class:`rvrt.export.onnx.OnnxNet`), or a one-line
    error where the graph cannot run this input with these options."""
    t, h, w = tile
    name = net.path.name
    given = options.tile
    if given != "auto" and tuple(given) != tuple(tile):
        raise InputError(
            f"{name} was exported for tiles of {t} {h} {w} (T H W); {flag('tile', options.prefix)} "
            f"{' '.join(map(str, given))} cannot run on it: drop --tile, or export again with --frames/--size"
        )
    if height < h or width < w or (total is not None and total < t):
        have = f"{height}x{width}" + (f", {total} frames" if total is not None else "")
        raise InputError(
            f"{name} was exported for tiles of {t} frames of {h}x{w} pixels, larger than this input ({have}): "
            f"export again with --frames/--size no larger than the input"
        )
    if dtype != torch.float32 or compile:
        raise InputError(f"{name} runs in ONNX Runtime in float32: drop --dtype/--compile")
    if options.tile_overlap is not None and any(o >= s for o, s in zip(options.tile_overlap, tile) if s):
        raise InputError(f"{flag('tile_overlap', options.prefix)} must be smaller than the tile {t} {h} {w} of {name}")
    log.info("%s: using the tile it was exported for, %d frames of %dx%d pixels", name, t, h, w)
    return replace(options, tile=tile)


def build_stage(
    options: StageOptions,
    net: nn.Module,
    spec: zoo.ModelSpec,
    *,
    height: int,
    width: int,
    device: torch.device,
    dtype: torch.dtype,
    budget: int,
    compile: bool | str = False,
    index: int = 0,
    plan: dict | None = None,
    total: int | None = None,
) -> Stage:
    """The stage for ``options`` with its model, planned for ``height x width`` input frames.

    Args:
        budget: bytes the stage may use (``tile="auto"`` sizes its tiles to it).
        plan: tiles an interrupted run used (a resumed run keeps them).
        total: input frames, if known.
    """
    fixed = getattr(net, "tile", None)  # an ONNX graph runs the one tile it was exported for
    if fixed is not None:
        options = _fixed_tile(options, net, fixed, height=height, width=width, total=total, dtype=dtype,
                              compile=compile)  # fmt: skip
    compile_settings(compile, device)  # a refused compile: one line before any frame is restored
    common = dict(
        options=options, net=net, spec=spec, device=device, dtype=dtype, compile=compile, index=index, total=total
    )
    if options.kind == "restore":
        sigma_map = _check_sigma(spec, options)
        p = plan_stage(spec, options, height=height, width=width, device=device, dtype=dtype, budget=budget,
                       resumed=plan, total=total)  # fmt: skip
        return RestoreStage(plan=p, scale=spec.scale, sigma_map=sigma_map, **common)
    window = vfi_window(spec)
    p = plan_stage(spec, options, height=height, width=width, device=device, dtype=dtype, budget=budget,
                   resumed=plan, frames=window)  # fmt: skip
    return InterpolateStage(plan=p, scale=1, time_factor=2, window=window, **common)
