"""The loss the trainer logs, against the same loss computed by hand from the recipe's first samples."""

from __future__ import annotations

import json

import pytest
import torch

from rvrt.data.datasets import build_dataset
from rvrt.train import Trainer, load_recipe
from rvrt.train.model import build_model, init_weights


def _charbonnier(x: torch.Tensor, y: torch.Tensor, eps: float = 1e-9) -> torch.Tensor:
    return torch.sqrt((x.float() - y) ** 2 + eps).mean()


def test_logged_loss_is_the_mean_charbonnier_of_the_micro_batches_in_bf16(tmp_path):
    # one iteration of two micro-batches of one clip each, under bf16 autocast
    recipe = load_recipe(
        "tiny_cpu",
        [
            "data.val={}",
            "train.log_every=1",
            "train.save_every=0",
            "train.threads=1",
            "train.iterations=1",
            "train.amp='bf16'",
            "data.batch_size=2",
            "train.accum_steps=2",
            "data.train.num_frames=2",
            "data.train.length=2",
        ],
    )
    Trainer(recipe, tmp_path, progress=False).fit()
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    logged = next(r["loss"] for r in rows if r.get("step") == 1 and "loss" in r)

    # by hand: the initial network (seeded with the recipe seed), the first two samples of epoch 0 (a
    # permutation drawn from seed + 0; samples keyed (index, epoch)), each through the network under
    # bf16 autocast (with gradients on, as in training: autocast then casts the same way), Charbonnier
    # (eps 1e-9) against its GT, averaged over the two micro-batches
    torch.manual_seed(recipe["seed"])
    model, _, _ = build_model(recipe["model"])
    init_weights(model, recipe["model"])
    model.train()
    data = build_dataset(recipe["data"]["train"], train=True, seed=recipe["seed"])
    order = torch.randperm(len(data), generator=torch.Generator().manual_seed(recipe["seed"])).tolist()
    by_dtype = {}
    for dtype in (torch.bfloat16, torch.float32):
        losses = []
        for index in order[:2]:
            sample = data[(index, 0)]
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                out = model(sample["lq"][None])
            losses.append(_charbonnier(out, sample["gt"][None]).detach() / 2)
        by_dtype[dtype] = float(losses[0] + losses[1])
    # measured: equal to the bf16 value (0.0196228); float32 gives 1.3e-4 more (relative), one clip alone
    # or the micro-batch losses summed (not averaged) are far off
    assert logged == pytest.approx(by_dtype[torch.bfloat16], rel=1e-6, abs=0)
    assert logged != pytest.approx(by_dtype[torch.float32], rel=3e-5, abs=0)
