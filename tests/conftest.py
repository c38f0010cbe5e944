"""Shared test helpers: fixture locations, tiny RVRT models with conformance weights."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

DATA = Path(__file__).parent / "data"
sys.path.insert(0, str(Path(__file__).parent))  # for conformance_weights and media

from media import REAL  # noqa: E402

# one thread per test process: the suite runs with pytest-xdist (one worker per core), and the small
# tensors of the tests run faster single-threaded than with two threads fighting over two cores
torch.set_num_threads(1)


def pytest_configure(config) -> None:
    # CI must run the real-footage tests, not pass by skipping them (elsewhere they skip with a hint)
    if os.environ.get("CI", "").lower() in ("1", "true", "yes") and not REAL.is_dir():
        raise pytest.UsageError(
            f"CI is set but the real footage is missing at {REAL}: put the shared data/real folder there "
            "or point RVRT_REAL_DATA at it"
        )


@pytest.fixture(scope="session", autouse=True)
def hermetic(tmp_path_factory):
    """No test reads or writes the user's weights cache or reaches the network.

    The cache (``RVRT_HOME``) is a private temporary folder and ``RVRT_OFFLINE=1`` is set for the whole
    session, subprocesses included; a test that serves files from a local HTTP server clears it
    itself. Connections to anything but the loopback interface fail at once in this process.
    """
    saved = {k: os.environ.get(k) for k in ("RVRT_HOME", "RVRT_OFFLINE")}
    os.environ["RVRT_HOME"] = str(tmp_path_factory.mktemp("rvrt_home"))
    os.environ["RVRT_OFFLINE"] = "1"
    connect = socket.socket.connect

    def loopback_only(sock, address):
        host = address[0] if isinstance(address, tuple) else address
        if sock.family in (socket.AF_INET, socket.AF_INET6) and host not in ("127.0.0.1", "::1", "localhost"):
            raise OSError(f"tests must not use the network (connection to {address!r} refused by tests/conftest.py)")
        return connect(sock, address)

    socket.socket.connect = loopback_only
    yield
    socket.socket.connect = connect
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


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


@pytest.fixture
def empty_model_caches():
    """The models' process-wide caches (shift masks, index tables) emptied before and after the test, so
    a test about what happens when they are first filled does not depend on which tests ran before."""
    from rvrt.models import swin

    caches = [swin._cpu_constant, swin._shift_mask_cpu]
    for c in caches:
        c.cache_clear()
    yield
    for c in caches:
        c.cache_clear()


# micro VRT architectures (every kind of block, a fraction of a second per clip): constructor
# arguments per task; the ``tiny_vrt`` fixture writes them as config files
VRT_MICRO = dict(
    upscale=4,
    img_size=[2, 32, 32],
    window_size=[2, 4, 4],
    depths=[2] * 7 + [1, 1],
    indep_reconsts=[8],
    embed_dims=[8] * 7 + [16, 16],
    num_heads=[1] * 9,
    mlp_ratio=1.0,
    pa_frames=2,
    deformable_groups=2,
)
VRT_MICRO_CONFIGS = {
    "sr": VRT_MICRO,
    "deblur": dict(VRT_MICRO, upscale=1),
    "denoise": dict(VRT_MICRO, upscale=1, nonblind_denoising=True),
    "vfi": dict(VRT_MICRO, upscale=1, out_chans=3, img_size=[4, 32, 32], indep_reconsts=[], pa_frames=0),
}


@pytest.fixture(scope="session")
def tiny_vrt(tmp_path_factory) -> dict[str, tuple[Path, Path]]:
    """``task -> (config.json, weights.pth)`` of micro VRT models with random (seeded) weights."""
    import rvrt

    root = tmp_path_factory.mktemp("tiny_vrt")
    out = {}
    for i, (task, cfg) in enumerate(VRT_MICRO_CONFIGS.items()):
        config = root / f"micro_{task}.json"
        config.write_text(json.dumps(dict(arch="vrt", **cfg)))
        torch.manual_seed(i)
        model = rvrt.create_model(config)
        with torch.no_grad():  # the published init zeroes some layers; perturb them so they matter
            for p in model.parameters():
                p.add_(torch.randn_like(p) * 0.02)
        weights = root / f"micro_{task}.pth"
        torch.save(model.state_dict(), weights)
        out[task] = (config, weights)
    return out


# a small RVRT x4 (12 channels) with perturbed random weights, as a self-describing safetensors file:
# the model of the runner's tests (a fraction of a second per clip on a CPU)
TINY_SR = dict(upscale=4, embed_dims=[12, 12, 12], num_heads=[2, 2, 2], attention_heads=2, deformable_groups=2)


def write_tiny_sr(path: Path, seed: int = 0) -> Path:
    import rvrt
    from rvrt.checkpoint import save_safetensors

    torch.manual_seed(seed)
    model = rvrt.RVRT(**TINY_SR)
    with torch.no_grad():
        for p in model.parameters():  # make the random network do something visible
            p.add_(torch.randn_like(p) * 0.01)
    save_safetensors(model, path, arch="rvrt", config=model.config.to_kwargs(), name=f"rvrt:{path.stem}")
    return path


@pytest.fixture(scope="session")
def tiny_sr_weights(tmp_path_factory) -> Path:
    """``tiny_sr.safetensors``: see :data:`TINY_SR`."""
    return write_tiny_sr(tmp_path_factory.mktemp("tiny_sr") / "tiny_sr.safetensors")
