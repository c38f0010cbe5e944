"""Where and in which precision models run: device and dtype names, available memory, peak memory.

The one place that turns ``--device`` and ``--dtype`` into torch objects and that reads how
much memory a run may use; the inference planner and the command line both come here.
"""

from __future__ import annotations

import os
import resource
from pathlib import Path

import torch

from rvrt.errors import InputError

__all__ = [
    "DTYPES",
    "available_memory",
    "dtype_name",
    "host_memory_mb",
    "native_bf16",
    "peak_host_memory_mb",
    "resolve_device",
    "resolve_dtype",
]

#: the dtype vocabulary of every option (``--dtype``, ``dtype=``); the long names are accepted too
DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}
_ALIASES = {"float32": "fp32", "float": "fp32", "float16": "fp16", "half": "fp16", "bfloat16": "bf16"}


#: accelerators the reference paths run on: device type -> (is it available here, how many devices)
_ACCELERATORS = {
    "cuda": (lambda: torch.cuda.is_available(), lambda: torch.cuda.device_count()),
    "xpu": (
        lambda: hasattr(torch, "xpu") and torch.xpu.is_available(),
        lambda: torch.xpu.device_count(),
    ),
    "mps": (
        lambda: torch.backends.mps.is_available(),
        lambda: 1,
    ),
}


def resolve_device(device: str | torch.device | None) -> torch.device:
    """``"auto"`` (the first available of CUDA, XPU, MPS, else CPU), or any device torch names:
    ``"cpu"``, ``"cuda"``/``"cuda:N"``, ``"xpu"``/``"xpu:N"``, ``"mps"``. The fused kernels are CUDA only;
    elsewhere the reference paths run.

    Raises:
        InputError: an unknown or unavailable device, or not a device at all (the message says why).
    """
    if device is None or str(device) == "auto":
        for kind, (available, _) in _ACCELERATORS.items():
            if available():
                return torch.device(kind)
        return torch.device("cpu")
    if not isinstance(device, (str, torch.device)):
        raise InputError(f"device must be a string such as 'cpu' or 'cuda:0'; got {type(device).__name__}")
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as err:
        raise InputError(f"unknown device {device!r}: use auto, cpu, cuda[:N], xpu[:N] or mps") from err
    if dev.type == "cpu":
        return dev
    if dev.type not in _ACCELERATORS:
        raise InputError(
            f"device {device} is not supported: rvrt runs on cpu, cuda[:N], xpu[:N] and mps "
            "(other torch backends are untested)"
        )
    available, count = _ACCELERATORS[dev.type]
    if not available():
        raise InputError(
            f"device {device} requested but this PyTorch build or machine has no {dev.type.upper()}; use --device cpu"
        )
    if dev.index is not None and dev.index >= count():
        raise InputError(f"device {device} requested but only {count()} {dev.type.upper()} device(s) exist")
    return dev


def resolve_dtype(dtype: str | torch.dtype | None) -> torch.dtype:
    """``fp32`` / ``fp16`` / ``bf16`` (or ``float32`` ..., or the torch dtype); None is fp32.

    Raises:
        InputError: any other value.
    """
    if dtype is None:
        return torch.float32
    if isinstance(dtype, torch.dtype):
        if dtype not in DTYPES.values():
            raise InputError(f"unsupported dtype {dtype}: use fp32, fp16 or bf16")
        return dtype
    if not isinstance(dtype, str):
        raise InputError(f"dtype must be 'fp32', 'fp16' or 'bf16'; got {type(dtype).__name__}")
    key = _ALIASES.get(dtype.lower(), dtype.lower())
    if key not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}: use fp32, fp16 or bf16")
    return DTYPES[key]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 convolutions and matrix products in hardware, so that
    bfloat16 autocast is faster than float32: a CPU with AMX or AVX512-BF16 (through oneDNN). False
    elsewhere, other devices included (``dtype="auto"`` keeps float32 where that was not measured)."""
    if torch.device(device).type != "cpu":
        return False
    probes = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    try:
        return any(bool(getattr(torch.cpu, name)()) for name in probes if hasattr(torch.cpu, name))
    except RuntimeError:
        return False


def dtype_name(dtype: torch.dtype) -> str:
    """The short name (``fp32``, ``fp16``, ``bf16``) of a torch dtype."""
    return next(k for k, v in DTYPES.items() if v == dtype)


def _cgroup_room() -> int | None:
    """Memory this process may still use under a cgroup v2 or v1 limit (containers), if limited."""
    for limit, used in (
        ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
        ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
    ):
        try:
            text = Path(limit).read_text().strip()
            if text == "max" or int(text) >= 1 << 60:
                return None
            return max(int(text) - int(Path(used).read_text()), 0)
        except (OSError, ValueError):
            continue
    return None


def available_memory(device: torch.device) -> int:
    """Bytes a new allocation can still get: free device memory on CUDA (plus what the caching
    allocator holds unused) and XPU; on MPS Metal's recommended budget less what it holds; on the
    CPU the kernel's ``MemAvailable``, lowered to what a container's memory limit leaves. 4 GiB when
    nothing can be read."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "xpu":
        free, _ = torch.xpu.mem_get_info(device)
        return int(free)
    if device.type == "mps":  # unified memory: what Metal recommends for this process, less what it holds
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    avail = None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
                    break
    except OSError:
        pass
    if avail is None:
        try:
            avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            avail = 4 << 30
    room = _cgroup_room()
    return min(avail, room) if room is not None else avail


def host_memory_mb() -> float:
    """Resident memory of this process now (MB)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return peak_host_memory_mb()


def peak_host_memory_mb() -> float:
    """Peak resident memory of this process so far (MB).

    On Linux the high-water mark of this process's own memory (``VmHWM``): ``ru_maxrss`` keeps the
    peak of the process that started it across ``exec``, so a small run started from a large
    process would report the large one's peak.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except (OSError, ValueError, IndexError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if os.uname().sysname == "Darwin" else peak / 1024.0
