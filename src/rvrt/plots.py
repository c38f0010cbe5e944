"""Plots of evaluation results (matplotlib, an optional extra: ``pip install "rvrt[plot]"``).

:func:`plot_eval` draws the per-frame PSNR and SSIM of every sequence of an
:class:`rvrt.evaluation.EvalResult`, in the channel the benchmark reports (RGB or Y), and returns
what it drew, read back from the figure's lines.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rvrt.errors import InputError

if TYPE_CHECKING:
    from rvrt.evaluation import EvalResult

__all__ = ["PLOT_EXTENSIONS", "EvalPlot", "require_matplotlib", "plot_eval"]

#: file types the plot can be written as
PLOT_EXTENSIONS = (".png", ".svg", ".pdf")
#: more sequences than this get no legend (it would cover the plot)
MAX_LEGEND = 12


def require_matplotlib() -> None:
    """Raise a one-line :class:`InputError` naming the extra to install when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise InputError('plotting needs matplotlib, which is not installed: pip install "rvrt[plot]"') from None


def check_plot_path(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """``path`` if the plot can be written there (a known type; existing only with ``overwrite``)."""
    path = Path(path)
    if path.suffix.lower() not in PLOT_EXTENSIONS:
        raise InputError(f"plot {path}: give a {'/'.join(PLOT_EXTENSIONS)} file")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it")
    return path


@dataclass(frozen=True)
class EvalPlot:
    """What :func:`plot_eval` drew.

    Attributes:
        path: the file written.
        size: ``(width, height)`` in pixels (of a PNG; SVG/PDF at the same size in points * dpi/72).
        channel: ``"RGB"`` or ``"Y"``.
        series: sequence name -> ``{"psnr": values, "ssim": values}``, one value per frame, as
            read back from the lines of the figure (non-finite PSNR, identical frames, is a gap: nan).
    """

    path: Path
    size: tuple[int, int]
    channel: str
    series: dict[str, dict[str, tuple[float, ...]]]


def plot_eval(
    result: EvalResult,
    path: str | os.PathLike,
    *,
    channel: str | None = None,
    title: str | None = None,
    size: tuple[int, int] = (900, 600),
    dpi: int = 100,
    overwrite: bool = False,
) -> EvalPlot:
    """Draw per-frame PSNR (top) and SSIM (bottom) of every sequence, one line each, and write it.

    Args:
        result: scores from :func:`rvrt.evaluation.evaluate`.
        path: ``.png``, ``.svg`` or ``.pdf`` file (written atomically).
        channel: ``"RGB"`` or ``"Y"``; default: the channel the protocol reports.
        title: first line of the title (e.g. the model); the protocol and channel follow.
        size: ``(width, height)`` in pixels at ``dpi``.
        overwrite: replace an existing file.

    Raises:
        InputError: matplotlib missing (one line naming the extra), a path of another type, an
            existing file without ``overwrite``, an unknown channel.
    """
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from rvrt.files import atomic_write

    path = check_plot_path(path, overwrite=overwrite)
    channel = channel or result.protocol.channel
    if channel not in ("RGB", "Y"):
        raise InputError(f"channel must be 'RGB' or 'Y'; got {channel!r}")
    suffix = "_y" if channel == "Y" else ""

    fig = Figure(figsize=(size[0] / dpi, size[1] / dpi), dpi=dpi, layout="constrained")
    FigureCanvasAgg(fig)
    ax_psnr, ax_ssim = fig.subplots(2, 1, sharex=True)
    lines = {}
    for seq in result.sequences:
        x = list(range(len(seq.frames)))
        psnr = [_finite_or_nan(getattr(f, "psnr" + suffix)) for f in seq.frames]
        ssim = [_finite_or_nan(getattr(f, "ssim" + suffix)) for f in seq.frames]
        marker = "o" if len(x) <= 60 else None
        (lp,) = ax_psnr.plot(x, psnr, marker=marker, markersize=3, linewidth=1.2,
                             label=f"{seq.name} ({seq.mean('psnr' + suffix):.2f} dB)")  # fmt: skip
        (ls,) = ax_ssim.plot(x, ssim, marker=marker, markersize=3, linewidth=1.2, color=lp.get_color(),
                             label=f"{seq.name} ({seq.mean('ssim' + suffix):.4f})")  # fmt: skip
        lines[seq.name] = (lp, ls)
    ax_psnr.set_ylabel(f"PSNR ({channel}), dB")
    ax_ssim.set_ylabel(f"SSIM ({channel})")
    ax_ssim.set_xlabel("frame")
    ax_ssim.xaxis.get_major_locator().set_params(integer=True)
    for ax in (ax_psnr, ax_ssim):
        ax.grid(True, alpha=0.3)
        if 0 < len(result.sequences) <= MAX_LEGEND:
            ax.legend(fontsize="small", loc="best")
    p = result.protocol
    head = f"{p.title}: per-frame PSNR / SSIM ({channel}), mean {result.mean('psnr' + suffix):.2f} dB"
    fig.suptitle(f"{title}\n{head}" if title else head)

    fmt = path.suffix.lower().lstrip(".")
    atomic_write(path, lambda tmp: fig.savefig(tmp, format=fmt, dpi=dpi), overwrite=overwrite)
    series = {
        name: {"psnr": tuple(map(float, lp.get_ydata())), "ssim": tuple(map(float, ls.get_ydata()))}
        for name, (lp, ls) in lines.items()
    }
    width, height = (round(v) for v in fig.get_size_inches() * dpi)
    return EvalPlot(path, (width, height), channel, series)


def _finite_or_nan(x: float) -> float:
    return x if math.isfinite(x) else math.nan
