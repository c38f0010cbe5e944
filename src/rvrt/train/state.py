"""What makes a training run resumable besides the model and optimiser: the random states of a
process, and the run's checkpoint files (``checkpoints/step_N.pt``)."""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

__all__ = ["CHECKPOINT_FORMAT", "find_checkpoints", "rng_state", "set_rng_state"]

CHECKPOINT_FORMAT = "rvrt.train/1"
_STEP_FILE = re.compile(r"^step_(\d+)\.pt$")


def rng_state(loader_gen: torch.Generator, device: torch.device) -> dict[str, Any]:
    """Every random state a resumed run must restore: Python, NumPy, PyTorch (CPU and the
    device's), and the data loader's generator (as tensors and numbers, for ``weights_only``)."""
    kind, key, pos, has_gauss, gauss = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": {
            "kind": kind,
            "key": torch.from_numpy(key.astype(np.int64)),
            "pos": int(pos),
            "has_gauss": int(has_gauss),
            "gauss": float(gauss),
        },
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
        "loader": loader_gen.get_state(),
    }


def set_rng_state(state: dict[str, Any], loader_gen: torch.Generator, device: torch.device) -> None:
    """Restore what :func:`rng_state` saved."""
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    n = state["numpy"]
    np.random.set_state((n["kind"], n["key"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and state["cuda"] is not None:
        torch.cuda.set_rng_state(state["cuda"], device)
    loader_gen.set_state(state["loader"])


def find_checkpoints(out_dir: Path) -> list[Path]:
    """Checkpoints ``step_*.pt`` of a run, oldest first."""
    folder = Path(out_dir) / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := _STEP_FILE.match(p.name))]
    return [p for _, p in sorted(found)]
