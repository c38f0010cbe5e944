"""Shared test helpers: fixture locations, tiny RVRT models with conformance weights."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(Path(__file__).parent))  # for conformance_weights

torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(scope="session")
def rvrt_meta() -> dict:
    return json.loads((DATA / "rvrt" / "meta.json").read_text())


def load_case(name: str) -> dict:
    with np.load(DATA / "rvrt" / f"{name}.npz", allow_pickle=False) as z:
        return {k: (z[k].item() if z[k].ndim == 0 else torch.from_numpy(z[k])) for k in z.files}


def tiny_rvrt(meta: dict, name: str, **model_kwargs):
    """A tiny conformance RVRT (``tiny_sr``, ``tiny_deblur``, ``tiny_denoise``) with its weights."""
    import rvrt
    from conformance_weights import state_dict_for

    model = rvrt.RVRT(**meta["configs"][name], **model_kwargs).eval()
    model.load_state_dict(state_dict_for(model, meta["listings"][name], meta["seed"]), strict=True)
    return model
