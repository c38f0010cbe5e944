"""Benchmark protocols of the RVRT / VRT papers, as data (no PyTorch: the command line reads them
to build its help).

A :class:`Protocol` says how a benchmark is scored: the scale between LQ and GT, the channel the
paper reports (RGB or the BT.601 Y channel; both are always computed), the border crop (0 for all
of them), whether the LQ input is made from the GT by adding noise (video denoising), whether
only a centre frame is scored (Vimeo-90K-T) and how frame scores are averaged. Scoring is in
:mod:`rvrt.evaluation`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rvrt.errors import InputError

__all__ = ["Protocol", "Septuplet", "PROTOCOLS", "get_protocol", "default_protocol", "read_sequence_list"]


@dataclass(frozen=True)
class Septuplet:
    """Vimeo-90K-T: restore a mirrored 7-frame clip, score the centre frame only.

    The LQ frames ``lq_frames`` are extended to ``lq + reversed(lq)`` when ``mirror`` (14 frames);
    the mean of the outputs at ``outputs`` (both copies of the centre frame) is scored against
    ``gt_frame``.
    """

    lq_frames: tuple[str, ...] = tuple(f"im{i}.png" for i in range(1, 8))
    gt_frame: str = "im4.png"
    mirror: bool = True
    outputs: tuple[int, ...] = (3, 10)


@dataclass(frozen=True)
class Protocol:
    """How one benchmark is scored.

    Attributes:
        name: key in :data:`PROTOCOLS`.
        title: the benchmark's usual name.
        task: ``"sr"``, ``"deblur"`` or ``"denoise"``.
        scale: GT size / LQ size.
        channel: what the papers report, ``"RGB"`` or ``"Y"``.
        border: pixels cropped from each side before scoring.
        noise: the LQ input is ``GT + N(0, sigma/255)`` (not clipped) with a ``sigma/255`` map
            appended as a 4th channel; the generator is reset to ``noise_seed`` for every
            sequence and draws the noise of the whole clip at once. The LQ folder is not read.
        noise_seed: see ``noise``.
        septuplet: centre-frame scoring (Vimeo-90K-T), or None for every frame.
        aggregate: the headline number: ``"sequence"`` (mean of per-sequence means) or
            ``"frame"`` (mean over all frames).
        layout: the expected folders, for humans.
        note: anything else worth knowing.
    """

    name: str
    title: str
    task: str
    scale: int
    channel: str
    border: int = 0
    noise: bool = False
    noise_seed: int = 0
    septuplet: Septuplet | None = None
    aggregate: str = "sequence"
    layout: str = ""
    note: str = ""

    def __post_init__(self) -> None:
        if self.channel not in ("RGB", "Y"):
            raise ValueError(f"channel must be 'RGB' or 'Y'; got {self.channel!r}")
        if self.aggregate not in ("sequence", "frame"):
            raise ValueError(f"aggregate must be 'sequence' or 'frame'; got {self.aggregate!r}")
        if self.scale < 1 or self.border < 0:
            raise ValueError("scale must be >= 1 and border >= 0")


_SR_NOTE = "PSNR/SSIM on RGB and on Y are both computed; the paper's table uses the one in 'channel'."

PROTOCOLS: dict[str, Protocol] = {
    p.name: p
    for p in (
        Protocol(
            "reds4",
            "REDS4",
            "sr",
            4,
            "RGB",
            layout="sequences 000, 011, 015, 020 of REDS train: LQ train_sharp_bicubic/X4 (320x180), "
            "GT train_sharp (1280x720), 100 frames 00000000.png ...",
            note=_SR_NOTE,
        ),
        Protocol(
            "vid4",
            "Vid4",
            "sr",
            4,
            "Y",
            layout="calendar, city, foliage, walk: LQ Vid4/BIx4 or Vid4/BDx4, GT Vid4/GT (same frame names)",
            note=_SR_NOTE,
        ),
        Protocol(
            "vid4x2",
            "Vid4 x2",
            "sr",
            2,
            "Y",
            layout="calendar, city, foliage, walk: GT Vid4/GT; LQ made from it by MATLAB bicubic at 1/2 "
            "(rvrt degrade --kind bi --scale 2 Vid4/GT/<seq> -o Vid4/BIx2/<seq>)",
            note=_SR_NOTE + " Not in the papers (no x2 results were published): Vid4's x4 rules at x2.",
        ),
        Protocol(
            "reds4x2",
            "REDS4 x2",
            "sr",
            2,
            "RGB",
            layout="sequences 000, 011, 015, 020 of REDS train: GT train_sharp (1280x720); LQ made from it by "
            "MATLAB bicubic at 1/2 (rvrt degrade --kind bi --scale 2), 640x360",
            note=_SR_NOTE + " Not in the papers (no x2 results were published): REDS4's x4 rules at x2.",
        ),
        Protocol(
            "udm10",
            "UDM10",
            "sr",
            4,
            "Y",
            layout="10 sequences (prepared with KAIR prepare_UDM10.py): LQ UDM10/BDx4, GT UDM10/GT",
            note=_SR_NOTE + " Published only for BD.",
        ),
        Protocol(
            "vimeo",
            "Vimeo-90K-T",
            "sr",
            4,
            "Y",
            septuplet=Septuplet(),
            layout="vimeo_septuplet/sequences/<00001>/<0266>/im1..im7.png (GT) and the same tree of LQ "
            "frames (vimeo_septuplet_matlabLRx4 or _BDLRx4); restrict to the 7824 test clips "
            "with a sequence list (sep_testlist.txt)",
            note="7 LQ frames mirrored to 14, the mean of outputs 3 and 10 scored against im4.",
        ),
        Protocol(
            "dvd",
            "DVD",
            "deblur",
            1,
            "RGB",
            aggregate="frame",
            layout="10 test videos (KAIR prepare_DVD.py): LQ DVD10/test_GT_blurred, GT DVD10/test_GT",
            note="The paper's numbers come from a MATLAB script (MATLAB psnr/ssim, averaged over all "
            "frames); PSNR agrees with this definition, MATLAB's SSIM on RGB differs slightly.",
        ),
        Protocol(
            "gopro",
            "GoPro",
            "deblur",
            1,
            "RGB",
            aggregate="frame",
            layout="11 test videos (KAIR prepare_GoPro_as_video.py): LQ GoPro11/test_GT_blurred, GT GoPro11/test_GT",
            note="The paper's numbers come from a MATLAB script (MATLAB psnr/ssim, averaged over all "
            "frames); PSNR agrees with this definition, MATLAB's SSIM on RGB differs slightly.",
        ),
        Protocol(
            "set8",
            "Set8",
            "denoise",
            1,
            "RGB",
            noise=True,
            layout="8 sequences (tractor, touchdown, park_joy, sunflower, hypersmooth, motorbike, "
            "rafting, snowboard); GT only (the noisy input is generated; --lq may equal --gt)",
            note="Gaussian noise sigma in {10, 20, 30, 40, 50}; the papers report PSNR.",
        ),
        Protocol(
            "davis",
            "DAVIS-test",
            "denoise",
            1,
            "RGB",
            noise=True,
            layout="30 DAVIS-2017 test-dev sequences (480p); GT only (the noisy input is generated; "
            "--lq may equal --gt)",
            note="Gaussian noise sigma in {10, 20, 30, 40, 50}; the papers report PSNR.",
        ),
    )
}


def default_protocol(task: str, scale: int) -> Protocol:
    """A plain protocol for a task (every frame, RGB reported, mean over sequences)."""
    if task not in ("sr", "deblur", "denoise"):
        raise InputError(f"no evaluation protocol for task {task!r}")
    return Protocol(
        f"generic-{task}", f"{task} x{scale}" if scale > 1 else task, task, scale, "RGB", noise=task == "denoise"
    )


def get_protocol(protocol: str | Protocol) -> Protocol:
    """A protocol by name (see :data:`PROTOCOLS`), or the protocol itself."""
    if isinstance(protocol, Protocol):
        return protocol
    key = str(protocol).lower()
    if key not in PROTOCOLS:
        raise InputError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    return PROTOCOLS[key]


def read_sequence_list(path: str | os.PathLike) -> list[str]:
    """Sequence names from a text file: the first token of each non-empty line.

    Reads Vimeo-90K's ``sep_testlist.txt`` (``00001/0266``) and the official meta-info files
    (``00001/0266 7 (256,448,3)``).
    """
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise InputError(f"cannot read sequence list {path}: {err}") from err
    names = [line.split()[0].strip("/") for line in lines if line.strip() and not line.startswith("#")]
    if not names:
        raise InputError(f"sequence list {path} is empty")
    return names
