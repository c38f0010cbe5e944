"""ONNX export (`rvrt export`) checked with ONNX Runtime on the CPU against PyTorch, and exported files
run through the runner (`rvrt restore --weights model.onnx`).

Every family exports with standard operators; ONNX Runtime's output equals PyTorch's within 1e-4
(float32; measured about 3e-7) on inputs other than the one the graph was traced with.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
onnx = pytest.importorskip("onnx")

import rvrt  # noqa: E402
from conftest import DATA, TINY_SR, VRT_MICRO_CONFIGS  # noqa: E402
from rvrt.checkpoint import save_safetensors  # noqa: E402
from rvrt.cli import main  # noqa: E402
from rvrt.export.onnx import export_onnx, load_onnx  # noqa: E402

TOL = 1e-4
# the smallest RVRT that still has every part (4 frames: two clips, so every branch aligns once)
SMALL = dict(TINY_SR, num_blocks=[1, 1, 1], depths=[1, 1, 1])
TILE = (4, 40, 48)


@pytest.fixture(scope="module")
def small_sr(tmp_path_factory):
    """``(weights.safetensors, exported.onnx)`` of a small random RVRT x4, exported with `rvrt export`."""
    root = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = rvrt.RVRT(**SMALL)
    with torch.no_grad():
        for p in model.parameters():  # the published init zeroes the offsets: make them matter
            p.add_(torch.randn_like(p) * 0.02)
    weights = save_safetensors(model, root / "small.safetensors", arch="rvrt", config=model.config.to_kwargs(),
                               name="rvrt:small")  # fmt: skip
    out = root / "small.onnx"
    t, h, w = TILE
    assert main(["export", "--weights", str(weights), "--onnx", str(out), "--frames", str(t), "--size", f"{h}x{w}",
                 "-q"]) == 0  # fmt: skip
    return weights, out


def _max_error(net: torch.nn.Module, path, shape: tuple[int, ...]) -> float:
    x = torch.rand(shape, generator=torch.Generator().manual_seed(1))  # not the tracing input
    with torch.no_grad():
        ref = net.eval()(x)
    got = load_onnx(path)(x)
    assert got.shape == ref.shape
    return (got - ref).abs().max().item()


def _standard_ops(path) -> set[str]:
    graph = onnx.load(str(path)).graph
    assert {n.domain for n in graph.node} <= {"", "ai.onnx"}, "a custom operator in the graph"
    return {n.op_type for n in graph.node}


def test_rvrt_matches_pytorch(small_sr):
    weights, path = small_sr
    assert "GridSample" in _standard_ops(path)  # the flow warps and the guided deformable attention
    net = rvrt.load_model(weights)
    assert _max_error(net, path, (1, *TILE[:1], 3, *TILE[1:])) <= TOL
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["rvrt.tile"] == "4 40 48" and json.loads(meta["rvrt.config"])["embed_dims"] == [12, 12, 12]


def _small(tmp_path, config: dict, seed: int = 0):
    """A small random model of ``config`` (constructor arguments plus ``arch``) and its spec."""
    path = tmp_path / "config.json"
    path.write_text(json.dumps(config))
    spec = rvrt.api.resolve_spec(path)
    torch.manual_seed(seed)
    net = rvrt.create_model(spec).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.add_(torch.randn_like(p) * 0.02)
    return net, spec


def test_rvrt_light_matches_pytorch(tmp_path):
    config = json.loads((DATA / "rvrt_light" / "tiny_light_config.json").read_text())
    config.update(embed_dims=[12, 12, 12], num_blocks=[1, 1, 1], depths=[1, 1, 1])
    net, spec = _small(tmp_path, config)
    export_onnx(net, spec, tmp_path / "light.onnx", frames=4, height=40, width=40)
    _standard_ops(tmp_path / "light.onnx")  # window attention only: no sampling op needed
    assert _max_error(net, tmp_path / "light.onnx", (1, 4, 3, 40, 40)) <= TOL


def test_vrt_matches_pytorch(tmp_path):
    # non-blind denoising: 4 input channels (RGB + sigma map); every kind of block, one layer each
    net, spec = _small(tmp_path, dict(VRT_MICRO_CONFIGS["denoise"], arch="vrt", depths=[1] * 9))
    export_onnx(net, spec, tmp_path / "vrt.onnx", frames=2, height=40, width=40)
    ops = _standard_ops(tmp_path / "vrt.onnx")
    assert "GridSample" in ops and "GatherElements" in ops  # flow warps, deformable conv; nearest-pixel warps
    assert _max_error(net, tmp_path / "vrt.onnx", (1, 2, 4, 40, 40)) <= TOL


def _frames(n: int, h: int, w: int) -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(2)
    base = torch.rand(3, h, w, generator=g)
    return [(base.roll(i, 2) * 0.8 + 0.1 * torch.rand(3, h, w, generator=g)).clamp(0, 1) for i in range(n)]


def test_restore_runs_the_onnx_file_through_the_runner(small_sr, caplog):
    weights, path = small_sr
    frames = _frames(6, 40, 64)  # two temporal windows of 4, two spatial tiles of 40x48: blends in time and space
    opts = dict(device="cpu", scene_cuts="off")
    caplog.set_level("INFO")
    got = dict(rvrt.restore_iter(frames, weights=path, **opts))
    assert "using the tile it was exported for, 4 frames of 40x48" in caplog.text
    ref = dict(rvrt.restore_iter(frames, weights=weights, tile=TILE, **opts))
    assert sorted(got) == sorted(ref) == list(range(6))
    assert max((got[i] - ref[i]).abs().max().item() for i in ref) <= TOL


@pytest.mark.parametrize(
    "args, says",
    [
        (["--tile", "2", "40", "48"], "was exported for tiles of 4 40 48"),
        (["--dtype", "bf16"], "runs in ONNX Runtime in float32"),
    ],
)
def test_restore_refuses_what_the_onnx_file_cannot_run(small_sr, tmp_path, capsys, args, says):
    from rvrt.media.images import write_png

    src = tmp_path / "in"
    for i, f in enumerate(_frames(4, 40, 48)):
        write_png(src / f"{i:03d}.png", (f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
    _, path = small_sr
    code = main(["restore", str(src), "-o", str(tmp_path / "out"), "--weights", str(path), "--device", "cpu", "-q",
                 *args])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and says in err and len(err.splitlines()) == 1


def test_restore_refuses_an_input_smaller_than_the_exported_tile(small_sr):
    _, path = small_sr
    with pytest.raises(rvrt.errors.InputError, match="larger than this input"):
        list(rvrt.restore_iter(_frames(4, 40, 44), weights=path, device="cpu", scene_cuts="off"))


@pytest.mark.parametrize(
    "args, says",
    [
        (["--dynamic"], "dynamic tile shapes are not supported"),
        (["--size", "40by40"], "--size must be HxW"),
        (["--opset", "13"], "--opset must be at least 16"),
    ],
)
def test_export_refuses_with_one_line(small_sr, tmp_path, capsys, args, says):
    weights, _ = small_sr
    code = main(["export", "--weights", str(weights), "--onnx", str(tmp_path / "x.onnx"), "--frames", "4",
                 "--size", "40x48", *args])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert code == 2 and says in err and len(err.splitlines()) == 1
    assert not (tmp_path / "x.onnx").exists()
