"""The training loop on a tiny RVRT: exact resume, freezing, overfitting, signals, DDP."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rvrt.errors import InputError
from rvrt.train import Trainer, load_recipe
from rvrt.train.model import build_model
from rvrt.train.state import find_checkpoints

SRC = str(Path(__file__).resolve().parents[2] / "src")


def _recipe(*overrides: str) -> dict:
    return load_recipe(
        "tiny_cpu", ["data.val={}", "train.log_every=1", "train.save_every=0", "train.threads=1", *overrides]
    )


def _load(path: Path) -> dict:
    return torch.load(str(path), map_location="cpu", weights_only=True)


def _losses(out: Path) -> dict[int, float]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


def _initial_spynet() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)  # the trainer builds the model right after seeding with the recipe seed
    module, _, _ = build_model(load_recipe("tiny_cpu")["model"])
    return {k: v.clone() for k, v in module.spynet.state_dict().items()}


def _same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_resume_is_bit_exact_across_freeze_switch_epochs_and_workers(tmp_path):
    # 3 clips, 1 per batch: iteration 4 starts epoch 1; SpyNet is frozen for iterations 1-2
    common = ["train.iterations=4", "train.freeze_iters=3", "data.train.items='sequences'", "data.train.length=4"]
    straight = Trainer(_recipe(*common, "data.num_workers=0"), tmp_path / "a", progress=False).fit()
    assert straight.status == "finished" and straight.step == 4

    split = _recipe(*common, "data.num_workers=2", "data.persistent_workers=true")
    first = Trainer(split, tmp_path / "b", until=2, progress=False).fit()
    assert first.status == "paused" and first.step == 2
    with pytest.raises(InputError, match="--resume auto"):  # never silently restart over a run
        Trainer(split, tmp_path / "b", progress=False).fit()
    second = Trainer(split, tmp_path / "b", resume="auto", progress=False).fit()
    assert second.status == "finished" and second.step == 4

    a, b = _load(straight.checkpoint), _load(second.checkpoint)
    assert _same(a["model"], b["model"])
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys() and all(_same(sa[k], sb[k]) for k in sa)
    assert a["epoch"] == b["epoch"] == 1 and a["batches_in_epoch"] == b["batches_in_epoch"] == 1
    assert _losses(tmp_path / "a") == _losses(tmp_path / "b")

    # SpyNet did not move while frozen (iterations 1-2), then trained
    init = _initial_spynet()
    mid = _load(find_checkpoints(tmp_path / "b")[0])
    assert mid["step"] == 2
    spy = lambda sd: {k[len("spynet.") :]: v for k, v in sd.items() if k.startswith("spynet.")}  # noqa: E731
    assert _same(spy(mid["model"]), init)
    assert not _same(spy(b["model"]), init)
    # frozen parameters had no gradient, so Adam kept no state for them before the switch
    n_spy = len([k for k in init if k not in ("mean", "std")])
    assert len(mid["optimizer"]["state"]) == len(sa) - n_spy

    final = b["model"]
    from rvrt.api import load_model

    model = load_model(tmp_path / "b" / "final.safetensors")  # exported weights rebuild without a recipe
    assert _same({k: v for k, v in model.state_dict().items()}, final)


def test_tiny_model_overfits_one_clip(tmp_path):
    # one fixed clip (no augmentation, SpyNet frozen); the loss must fall to at most 60% of its start
    r = _recipe(
        "train.iterations=25",
        "train.freeze_iters=1000",
        "data.train.count=1",
        "data.train.length=2",
        "data.train.num_frames=2",
        "data.train.size=[144, 144]",
        "data.train.hflip=false",
        "data.train.rot=false",
        "data.train.reverse=false",
        "optim.lr=1e-3",
        "schedule.type='constant'",
    )
    Trainer(r, tmp_path, progress=False).fit()
    losses = list(_losses(tmp_path).values())
    assert sum(losses[-5:]) / 5 < 0.6 * losses[0], losses


def test_bf16_accumulation_clipping_and_keep_last(tmp_path):
    r = _recipe(
        "train.iterations=2",
        "train.amp='bf16'",
        "data.batch_size=2",
        "train.accum_steps=2",
        "optim.grad_clip=0.05",
        "data.train.num_frames=2",
        "data.train.length=2",
        "train.save_every=1",
        "train.keep_last=1",
    )
    res = Trainer(r, tmp_path, progress=False).fit()
    assert res.status == "finished"
    losses = _losses(tmp_path)  # the values under bf16 and accumulation: tests/train/test_train_loss_values.py
    assert sorted(losses) == [1, 2] and all(math.isfinite(v) and v > 0 for v in losses.values())
    assert [p.name for p in find_checkpoints(tmp_path)] == ["step_00000002.pt"]  # older ones pruned
    with pytest.raises(InputError, match="not divisible"):
        Trainer(_recipe("data.batch_size=3", "train.accum_steps=2"), tmp_path / "x", progress=False).fit()
    with pytest.raises(InputError, match="checkpoint not found"):
        Trainer(_recipe(), tmp_path / "y", resume=str(tmp_path / "missing.pt"), progress=False).fit()


def test_initial_weights_spynet_file_and_non_strict_init(tmp_path):
    from rvrt.train.model import init_weights

    torch.manual_seed(1)
    donor, _, _ = build_model(load_recipe("tiny_cpu")["model"])
    torch.save({"params": donor.spynet.state_dict()}, tmp_path / "spynet.pth")
    partial = {k: v for k, v in donor.state_dict().items() if not k.startswith("conv_last")}
    torch.save({"params": partial}, tmp_path / "init.pth")

    cfg = dict(load_recipe("tiny_cpu")["model"], spynet=str(tmp_path / "spynet.pth"))
    torch.manual_seed(2)
    model, _, _ = build_model(cfg)
    init_weights(model, cfg)
    assert _same(model.spynet.state_dict(), donor.spynet.state_dict())
    assert not _same(model.state_dict(), donor.state_dict())

    from rvrt.errors import WeightsError

    with pytest.raises(WeightsError, match="missing"):
        init_weights(model, dict(cfg, spynet="", init=str(tmp_path / "init.pth"), init_strict=True))
    init_weights(model, dict(cfg, spynet="", init=str(tmp_path / "init.pth"), init_strict=False))
    got = model.state_dict()
    assert all(torch.equal(got[k], v) for k, v in partial.items())
    assert not torch.equal(got["conv_last.weight"], donor.state_dict()["conv_last.weight"])


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.mark.parametrize("to_group", [False, True], ids=["process", "process-group"])
def test_sigterm_finishes_the_step_saves_and_exits_130(tmp_path, to_group):
    """SIGTERM to the trainer, or to its whole process group with a data-loader worker (a batch
    scheduler's cancel or time limit, ``kill -- -PGID``): the worker keeps serving the last step."""
    out = tmp_path / "run"
    cmd = [
        sys.executable,
        "-m",
        "rvrt",
        "train",
        "tiny_cpu",
        "--out",
        str(out),
        "--no-progress",
        "--set",
        "train.iterations=500",
        "--set",
        "train.log_every=1",
        "--set",
        "train.save_every=0",
        "--set",
        "data.val={}",
        "--set",
        "data.train.num_frames=2",
        "--set",
        f"data.num_workers={1 if to_group else 0}",
    ]
    proc = subprocess.Popen(
        cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=to_group
    )
    try:
        deadline = time.time() + 120
        while not (out / "metrics.jsonl").is_file() and time.time() < deadline and proc.poll() is None:
            time.sleep(0.2)
        assert proc.poll() is None, proc.communicate()[1]
        if to_group:
            os.killpg(proc.pid, signal.SIGTERM)
        else:
            proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=120)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "interrupted at iteration" in err and "--resume auto" in err
    (ckpt,) = find_checkpoints(out)
    state = _load(ckpt)
    assert 1 <= state["step"] < 500 and state["step"] == max(_losses(out))


def test_torchrun_ddp_two_processes_with_checkpointing_and_spynet_switch(tmp_path):
    out = tmp_path / "ddp"
    sets = [
        "train.iterations=3",
        "train.freeze_iters=2",
        "data.batch_size=2",
        "train.log_every=1",
        "train.save_every=0",
        "train.val_every=3",
        "data.val.count=2",
        "model.kwargs.use_checkpoint_attn=true",
        "model.kwargs.use_checkpoint_ffn=true",
    ]
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",
        "--nproc-per-node",
        "2",
        "-m",
        "rvrt",
        "train",
        "tiny_cpu",
        "--out",
        str(out),
        "--no-progress",
    ]
    for s in sets:
        cmd += ["--set", s]
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    state = _load(find_checkpoints(out)[-1])
    assert state["step"] == 3 and state["world_size"] == 2 and state["micro_batch"] == 1
    assert len(state["rng"]) == 2 and not torch.equal(state["rng"][0]["torch"], state["rng"][1]["torch"])
    # the checkpoint is only written when both processes hold the same weights (fingerprint check),
    # so SpyNet's gradients were averaged after the wrapper was rebuilt at iteration 2
    spy = {k[len("spynet.") :]: v for k, v in state["model"].items() if k.startswith("spynet.")}
    assert not _same(spy, _initial_spynet())
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert any("val_psnr" in r and r["val_psnr"] > 10 for r in rows)
    assert (out / "final.safetensors").is_file() and (out / "best.safetensors").is_file()
