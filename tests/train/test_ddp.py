"""DDP under torchrun (gloo, CPU) against one process: the same global batch gives the same
training, the processes read disjoint samples that together are the single process's, and a
2-process run stopped at a checkpoint and resumed ends bit for bit where an uninterrupted one does.

The runs are tiny (RVRT of ``tiny_cpu`` on 8x8 LQ crops of 2 frames, 7 iterations; 4-frame clips,
which need no ``find_unused_parameters``, would cost 4x the time) and made once for all tests of
this file. The file is also the torchrun worker: ``python -m torch.distributed.run ...
test_ddp.py SPEC.json`` runs the jobs of ``SPEC`` in each process and records the dataset items
each process read.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

SRC = str(Path(__file__).resolve().parents[2] / "src")

ITERATIONS = 7
STOP = 5  # the interrupted run stops here: epoch 1, after 2 of its 3 batches
# 6 training items (one 6-frame synthetic video, clips of 2 frames), global batch 2: every epoch
# is 3 iterations, each process reads 3 items of it under DDP
SETS = [
    "data.val={}",
    f"train.iterations={ITERATIONS}",
    "train.log_every=1",
    "train.save_every=1",
    "train.keep_last=0",
    "train.threads=1",
    "train.tensorboard=false",
    "train.freeze_iters=0",
    "data.batch_size=2",
    "data.train.count=1",
    "data.train.length=6",
    "data.train.num_frames=2",
    "train.find_unused_parameters=true",  # 2-frame clips leave the alignment modules unused
    "data.train.size=[32, 32]",
    "data.train.gt_patch=32",
]
ITEMS, PER_EPOCH = 6, 3  # training items, iterations per epoch

# 2 processes vs 1 at the same global batch: the same samples and the same arithmetic up to the
# order of float32 summation (DDP averages two per-sample gradients where one process averages over
# its batch of two; in float64 the two gradients agree to 1.5e-16, in float32 to 9e-6 relative).
# Measured (torch 2.13, CPU, gloo): after iteration 1 the weights differ by at most 2.3e-6 where
# Adam moved them by 1e-3; the rounding differences then grow 2-3x an iteration (Adam divides by
# the small second moments of near-zero gradients): the distance between the two runs relative to
# the distance travelled is 4e-6 after iteration 1 and 1.5e-3 after iteration 7. Losses differ by
# at most 2.7e-6 relative, gradient norms by 6e-6 at iteration 1 and 4.6e-4 at most.
STEP1_WEIGHT_ATOL = 1e-5
REL_DISTANCE = 5e-3
LOSS_RTOL = 1e-5
STEP1_NORM_RTOL = 5e-5
NORM_RTOL = 2e-3


# --------------------------------------------------------------------------- worker (one per process)
def _worker(spec_path: str) -> None:
    import torch.distributed as dist

    from rvrt.data import datasets
    from rvrt.train import Trainer, load_recipe

    spec = json.loads(Path(spec_path).read_text())
    rank = int(os.environ["RANK"])
    seen: list[list[int]] = []  # (index, epoch) of every training item this process read, in order
    original = datasets.VideoClipDataset.__getitem__

    def getitem(self, key):
        seen.append([int(k) for k in key])
        return original(self, key)

    datasets.VideoClipDataset.__getitem__ = getitem
    # one process group for all jobs (a Trainer leaves a group it did not start in place)
    dist.init_process_group("gloo")
    try:
        for job in spec["jobs"]:
            seen.clear()
            recipe = load_recipe("tiny_cpu", spec["sets"])
            res = Trainer(recipe, job["out"], until=job.get("until"), resume=job.get("resume"), progress=False).fit()
            record = {"status": res.status, "step": res.step, "seen": seen}
            Path(job["out"], f"seen_rank{rank}.json").write_text(json.dumps(record))
    finally:
        dist.destroy_process_group()


# --------------------------------------------------------------------------- helpers
def _torchrun(tmp_path: Path, name: str, jobs: list[dict]) -> None:
    spec = tmp_path / f"{name}.json"
    spec.write_text(json.dumps({"sets": SETS, "jobs": jobs}))
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = SRC + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2", __file__, str(spec)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]


def _final(out: Path) -> dict:
    from rvrt.train.state import find_checkpoints

    return torch.load(str(find_checkpoints(out)[-1]), map_location="cpu", weights_only=True)


def _metrics(out: Path) -> dict[int, dict]:
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r for r in rows if "loss" in r}


def _seen(out: Path, rank: int) -> dict:
    return json.loads((out / f"seen_rank{rank}.json").read_text())


def _produce(tmp: Path) -> dict[str, Path]:
    from rvrt.data import datasets
    from rvrt.train import Trainer, load_recipe

    out = {k: tmp / k for k in ("one", "two", "split")}
    _torchrun(tmp, "first", [{"out": str(out["two"])}, {"out": str(out["split"]), "until": STOP}])
    for rank in (0, 1):
        (out["split"] / f"seen_rank{rank}.json").rename(out["split"] / f"seen_rank{rank}_first.json")
    _torchrun(tmp, "resume", [{"out": str(out["split"]), "resume": "auto"}])

    seen: list[list[int]] = []
    original = datasets.VideoClipDataset.__getitem__

    def getitem(self, key):
        seen.append([int(k) for k in key])
        return original(self, key)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(datasets.VideoClipDataset, "__getitem__", getitem)
        res = Trainer(load_recipe("tiny_cpu", SETS), out["one"], progress=False).fit()
    (out["one"] / "seen_rank0.json").write_text(json.dumps({"status": res.status, "step": res.step, "seen": seen}))
    (tmp / "done").touch()
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """``one``: 1 process; ``two``: 2 processes, uninterrupted; ``split``: 2 processes stopped after
    iteration STOP (``--until``), then resumed in fresh processes (``--resume auto``).

    Made once per session: under pytest-xdist the workers share one set of runs (the first makes
    it, the others wait for it) rather than each paying for its own."""
    if os.environ.get("PYTEST_XDIST_WORKER") is None:
        return _produce(tmp_path_factory.mktemp("ddp"))
    from filelock import FileLock

    shared = tmp_path_factory.getbasetemp().parent / "ddp_runs"
    with FileLock(str(shared) + ".lock"):
        if (shared / "done").is_file():
            return {k: shared / k for k in ("one", "two", "split")}
        if shared.exists():  # a worker that failed half-way: start over
            import shutil

            shutil.rmtree(shared)
        shared.mkdir()
        return _produce(shared)


# --------------------------------------------------------------------------- tests
def test_two_processes_train_as_one_with_the_same_global_batch(runs):
    from rvrt.train.state import find_checkpoints

    start = _initial_weights()
    ones, twos = find_checkpoints(runs["one"]), find_checkpoints(runs["two"])
    assert len(ones) == len(twos) == ITERATIONS  # one checkpoint per iteration
    for step, (p1, p2) in enumerate(zip(ones, twos), 1):
        one, two = (torch.load(str(p), map_location="cpu", weights_only=True) for p in (p1, p2))
        assert one["step"] == two["step"] == step
        assert (one["world_size"], one["micro_batch"]) == (1, 2)
        assert (two["world_size"], two["micro_batch"]) == (2, 1)  # data.batch_size is the global batch
        w1, w2 = one["model"], two["model"]
        assert w1.keys() == w2.keys() == start.keys()
        travelled = _distance(w1, start)
        apart = _distance(w1, w2)
        assert travelled > 0.5  # the weights did train
        assert apart <= REL_DISTANCE * travelled, f"iteration {step}: 1 vs 2 processes {apart:.3g} apart"
        if step == 1:
            diff = max((w1[k] - w2[k]).abs().max().item() for k in start)
            assert diff <= STEP1_WEIGHT_ATOL, f"1 vs 2 processes: weights differ by up to {diff:.3g}"

    m1, m2 = _metrics(runs["one"]), _metrics(runs["two"])
    assert sorted(m1) == sorted(m2) == list(range(1, ITERATIONS + 1))
    for step in m1:
        # the logged loss is the mean over the global batch; the gradient norm that of the
        # averaged gradient (a sum over processes, or an average taken twice, is off by 2x)
        assert m2[step]["loss"] == pytest.approx(m1[step]["loss"], rel=LOSS_RTOL), step
        rel = STEP1_NORM_RTOL if step == 1 else NORM_RTOL
        assert m2[step]["grad_norm"] == pytest.approx(m1[step]["grad_norm"], rel=rel), step
        assert m2[step]["epoch"] == m1[step]["epoch"]


def _distance(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    """L2 distance between two sets of weights."""
    return float(sum((a[k].double() - b[k].double()).square().sum() for k in a).sqrt())


def _initial_weights() -> dict[str, torch.Tensor]:
    """The weights a run starts from (the trainer seeds with the recipe seed, then builds)."""
    from rvrt.train import load_recipe
    from rvrt.train.model import build_model, init_weights

    recipe = load_recipe("tiny_cpu", SETS)
    torch.manual_seed(recipe["seed"])
    module, _, _ = build_model(recipe["model"])
    init_weights(module, recipe["model"])
    return module.state_dict()


def test_processes_read_disjoint_samples_that_make_up_the_single_process_batches(runs):
    one = _seen(runs["one"], 0)["seen"]
    ranks = [_seen(runs["two"], r)["seen"] for r in (0, 1)]
    assert len(one) == 2 * ITERATIONS  # a batch of 2 per iteration in one process
    assert [len(s) for s in ranks] == [ITERATIONS, ITERATIONS]  # a batch of 1 per process under DDP
    for step in range(ITERATIONS):
        # at every iteration the two processes read different items, and together the items
        # (index, epoch) the single process read in its batch
        a, b = tuple(ranks[0][step]), tuple(ranks[1][step])
        assert a != b, f"iteration {step + 1}: both processes read item {a}"
        assert {a, b} == {tuple(k) for k in one[2 * step : 2 * step + 2]}, step + 1
    for epoch in range(ITERATIONS // PER_EPOCH):
        # within an epoch no item is read twice, and all of them are read
        items = [i for s in ranks for i, e in s if e == epoch]
        assert sorted(items) == list(range(ITEMS)), f"epoch {epoch}: {items}"


def test_resume_under_ddp_is_bit_exact(runs):
    first = [json.loads((runs["split"] / f"seen_rank{r}_first.json").read_text()) for r in (0, 1)]
    assert all(f["status"] == "paused" and f["step"] == STOP for f in first)
    second = [_seen(runs["split"], r) for r in (0, 1)]
    assert all(s["status"] == "finished" and s["step"] == ITERATIONS for s in second)
    two = [_seen(runs["two"], r)["seen"] for r in (0, 1)]
    for r in (0, 1):
        # each process reads, in order, what it would have read without the stop
        assert first[r]["seen"] + second[r]["seen"] == two[r], f"process {r}"

    a, b = _final(runs["two"]), _final(runs["split"])
    assert (a["step"], a["epoch"], a["batches_in_epoch"]) == (b["step"], b["epoch"], b["batches_in_epoch"])
    assert a["model"].keys() == b["model"].keys()
    bad = [k for k in a["model"] if not torch.equal(a["model"][k], b["model"][k])]
    assert not bad, f"resumed weights differ from the uninterrupted run's in {bad[:5]}"
    sa, sb = a["optimizer"]["state"], b["optimizer"]["state"]
    assert sa.keys() == sb.keys()
    assert all(torch.equal(sa[k][n], sb[k][n]) for k in sa for n in sa[k])
    for r in (0, 1):  # every random state of every process continues as if never stopped
        ra, rb = a["rng"][r], b["rng"][r]
        assert ra["python"] == rb["python"], f"process {r}"
        assert all(
            torch.equal(ra["numpy"][k], rb["numpy"][k]) if k == "key" else ra["numpy"][k] == rb["numpy"][k]
            for k in ra["numpy"]
        )
        assert torch.equal(ra["torch"], rb["torch"]) and torch.equal(ra["loader"], rb["loader"]), f"process {r}"
    m_two, m_split = _metrics(runs["two"]), _metrics(runs["split"])
    assert sorted(m_split) == list(range(1, ITERATIONS + 1))
    for step in m_two:
        assert (m_split[step]["loss"], m_split[step]["grad_norm"]) == (m_two[step]["loss"], m_two[step]["grad_norm"])


if __name__ == "__main__":
    _worker(sys.argv[1])
