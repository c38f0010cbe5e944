"""The training loop: one process, or one of ``torchrun``'s processes under DDP.

* Exact resume: a checkpoint holds the model, the optimiser, the gradient scaler, the random
  states of every process and the data position (epoch + batches consumed), so a run stopped
  and resumed on the same hardware yields the same weights as one that was never stopped (bit
  for bit on CPU). Samples draw their randomness from ``(seed, epoch, index)``, so DataLoader
  workers never matter.
* SpyNet freezing under DDP: frozen parameters have ``requires_grad=False`` and the DDP wrapper
  is rebuilt when the frozen set changes. DDP registers only trainable parameters when it is
  built, so a wrapper built while SpyNet is frozen would never average SpyNet's gradients once
  it trains (the processes would silently diverge), and one built while it trains would wait
  forever for SpyNet's gradients while it is frozen. Rebuilding costs one broadcast; it needs
  neither ``find_unused_parameters`` nor a static graph, and activation checkpointing is
  non-reentrant, which DDP supports as is. Frozen parameters keep no optimiser state (their
  gradient is ``None``), as in KAIR.
* SIGINT/SIGTERM: the current step finishes (all processes agree on the stop), a checkpoint is
  written and :meth:`Trainer.fit` returns ``status="interrupted"`` (``rvrt train`` exits 130).
  A second SIGINT aborts at once.
"""

from __future__ import annotations

import contextlib
import gc
import inspect
import json
import logging
import random
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from rvrt.checkpoint import load_into
from rvrt.errors import InputError
from rvrt.files import atomic_write
from rvrt.inference.temporal import restore_frames
from rvrt.train import distributed as D
from rvrt.train.config import dumps_toml, loads_toml
from rvrt.train.losses import build_loss
from rvrt.train.model import build_model, export_weights, init_weights, matches
from rvrt.train.optim import build_optimizer, clip_grads, grad_norm, lr_at
from rvrt.train.state import CHECKPOINT_FORMAT, find_checkpoints, rng_state, set_rng_state

__all__ = ["Trainer", "TrainResult", "psnr"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :meth:`Trainer.fit` did: ``status`` is ``finished``, ``paused`` (reached ``until``)
    or ``interrupted`` (signal)."""

    status: str
    step: int
    iterations: int
    out_dir: Path
    checkpoint: Path | None = None
    weights: Path | None = None
    best: dict[str, Any] = field(default_factory=dict)


# --------------------------------------------------------------------------- pieces
def psnr(out: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean over frames of the 8-bit RGB PSNR (dB, :func:`rvrt.metrics.psnr`) of ``(T, C, H, W)``
    clips in [0, 1]; identical frames count as 100 dB."""
    from rvrt import metrics

    values = [min(metrics.psnr(o.float(), g.float()), 100.0) for o, g in zip(out, gt)]
    return sum(values) / len(values)


def _ignore_stop_signals(_: int) -> None:
    # Ctrl-C reaches the whole process group, and so does SIGTERM from a batch scheduler (Slurm's
    # scancel and time limit), systemd or `kill -- -PGID`; the workers must keep serving the batches
    # of the iteration the main process finishes before it saves and shuts them down (they exit
    # with it: PyTorch's workers watch their parent)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


# --------------------------------------------------------------------------- trainer
class Trainer:
    """Train a model as a recipe says.

    Args:
        recipe: a resolved recipe (:func:`rvrt.train.load_recipe`).
        out_dir: run folder: ``recipe.toml``, ``checkpoints/step_*.pt``, ``best.safetensors``,
            ``final.safetensors``, ``metrics.jsonl``, ``tb/``.
        resume: ``None`` (fresh run; refused if ``out_dir`` has checkpoints), ``"auto"`` (the latest
            checkpoint of ``out_dir``, or a fresh run if there is none) or a checkpoint path.
        until: stop (with a checkpoint) after this step without finishing the schedule.
        progress: show a progress bar (main process).
    """

    def __init__(
        self,
        recipe: dict[str, Any],
        out_dir: str | Path,
        *,
        resume: str | None = None,
        until: int | None = None,
        progress: bool = True,
    ) -> None:
        self.recipe, self.out_dir = recipe, Path(out_dir)
        self.resume, self.until, self.progress = resume, until, progress
        self.step = self.epoch = self.batches_in_epoch = 0
        self.best: dict[str, Any] = {}
        self._stop_signal: int | None = None
        self._frozen: bool | None = None
        self._iter = None
        self._loader_state: torch.Tensor | None = None  # loader_gen as the epoch's iterator began
        self._last_ckpt: Path | None = None
        self._bad_steps = 0

    # ------------------------------------------------------------------ setup
    def _device(self) -> torch.device:
        want = self.recipe["train"]["device"]
        if want == "auto":
            want = "cuda" if torch.cuda.is_available() else "cpu"
        if want.startswith("cuda"):
            if not torch.cuda.is_available():
                raise InputError("train.device asks for CUDA but no CUDA device is available")
            if want == "cuda":
                return torch.device("cuda", D.DistInfo.from_env().local_rank)
        return torch.device(want)

    def _resume_path(self) -> Path | None:
        existing = find_checkpoints(self.out_dir)
        if self.resume is None:
            if existing:
                raise InputError(
                    f"{self.out_dir} holds checkpoints of an earlier run; continue it with "
                    f"--resume auto, or pick another --out"
                )
            return None
        if self.resume == "auto":
            return existing[-1] if existing else None
        path = Path(self.resume)
        if not path.is_file():
            raise InputError(f"checkpoint not found: {path}")
        return path

    def _setup(self) -> None:
        r, t, d = self.recipe, self.recipe["train"], self.recipe["data"]
        if t["threads"] > 0:
            torch.set_num_threads(t["threads"])
        self.device = self._device()
        self.dist = D.setup(self.device)
        self.main = self.dist.is_main
        world, accum = self.dist.world_size, t["accum_steps"]
        if d["batch_size"] % (world * accum):
            raise InputError(
                f"data.batch_size={d['batch_size']} is not divisible by processes x accum_steps = {world} x {accum}"
            )
        self.micro_bs = d["batch_size"] // (world * accum)
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = True
        ckpt_path = self._resume_path()

        seed = int(r["seed"])
        torch.manual_seed(seed)  # same initial weights on every process
        self.module, self.arch, self.kwargs = build_model(r["model"])
        if ckpt_path is None:
            init_weights(self.module, r["model"])
        self.module.to(self.device).train()

        self.optimizer = build_optimizer(self.module, r["optim"])
        self.loss_fn = build_loss(r["loss"])
        self.amp_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(t["amp"])
        self.scaler = torch.amp.GradScaler(self.device.type) if t["amp"] == "fp16" else None

        from rvrt.data.datasets import build_dataset

        self.train_set = build_dataset(d["train"], train=True, seed=seed)
        self.val_set = build_dataset(d["val"], train=False, seed=seed + 1) if d["val"] else None
        self.sampler = D.ResumableSampler(
            len(self.train_set), rank=self.dist.rank, world_size=world, batch_size=self.micro_bs, seed=seed
        )
        if self.sampler.per_rank < self.micro_bs:
            raise InputError(
                f"the training set has {len(self.train_set)} samples, fewer than one batch of "
                f"{self.micro_bs} per process x {world} processes"
            )
        self.loader_gen = torch.Generator()
        self.loader_gen.manual_seed(seed + self.dist.rank)
        workers = d["num_workers"]
        self.loader = DataLoader(
            self.train_set,
            batch_size=self.micro_bs,
            sampler=self.sampler,
            num_workers=workers,
            pin_memory=d["pin_memory"] and self.device.type == "cuda",
            drop_last=True,
            persistent_workers=d["persistent_workers"] and workers > 0,
            prefetch_factor=d["prefetch_factor"] if workers > 0 else None,
            generator=self.loader_gen,
            worker_init_fn=_ignore_stop_signals,
        )

        random.seed(seed + self.dist.rank)
        np.random.seed((seed + self.dist.rank) % 2**32)
        torch.manual_seed(seed + self.dist.rank)
        if ckpt_path is not None:
            self._load(ckpt_path)
        elif self.main:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            text = dumps_toml(r)
            atomic_write(self.out_dir / "recipe.toml", lambda tmp: Path(tmp).write_text(text))
        D.barrier()
        self.model: nn.Module = self.module
        self._apply_freeze()
        self.tb = None
        if self.main and t["tensorboard"]:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("TensorBoard logging is off (pip install 'rvrt[train]' to turn it on)")
            else:
                self.tb = SummaryWriter(str(self.out_dir / "tb"), purge_step=self.step + 1)

    # ------------------------------------------------------------------ freezing / DDP
    def _apply_freeze(self) -> None:
        t = self.recipe["train"]
        frozen = t["freeze_iters"] > 0 and self.step + 1 < t["freeze_iters"] and bool(t["freeze"])
        if frozen == self._frozen:
            return
        count = 0
        for name, p in self.module.named_parameters():
            if matches(name, t["freeze"]):
                p.requires_grad_(not frozen)
                count += 1
        if self._frozen is not None or frozen:
            self._info(
                "%s %d parameter tensors (%s) at iteration %d",
                "froze" if frozen else "unfroze",
                count,
                ", ".join(t["freeze"]),
                self.step + 1,
            )
        self._frozen = frozen
        if self.dist.enabled:
            # a fresh wrapper registers exactly the parameters that train from now on
            self.model = self.module
            gc.collect()
            ddp = nn.parallel.DistributedDataParallel
            # buffers (SpyNet's normalisation, position indices) never change: no per-step sync
            quiet = (
                {"forward_sync_buffers": False}
                if "forward_sync_buffers" in inspect.signature(ddp).parameters
                else {"broadcast_buffers": False}
            )
            self.model = ddp(
                self.module,
                device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=t["find_unused_parameters"],
                **quiet,
            )

    # ------------------------------------------------------------------ data
    def _next_batch(self) -> dict[str, Any]:
        while True:
            if self._iter is None:
                self.sampler.set_position(self.epoch, self.batches_in_epoch * self.micro_bs)
                # each iterator draws its workers' base seed from loader_gen: a checkpoint keeps the
                # state before this epoch's draw, so a resumed run redraws the same seed
                self._loader_state = self.loader_gen.get_state()
                self._iter = iter(self.loader)
            try:
                batch = next(self._iter)
            except StopIteration:
                self._iter = None
                self.epoch, self.batches_in_epoch = self.epoch + 1, 0
                continue
            self.batches_in_epoch += 1
            return batch

    # ------------------------------------------------------------------ one step
    def _autocast(self):
        if self.amp_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.amp_dtype)

    def _train_step(self) -> tuple[torch.Tensor, torch.Tensor]:
        t = self.recipe["train"]
        for g in self.optimizer.param_groups:
            g["lr"] = lr_at(self.step, g["base_lr"], self.recipe["schedule"])
        self.optimizer.zero_grad(set_to_none=True)
        accum = t["accum_steps"]
        loss_sum = torch.zeros((), device=self.device)
        for micro in range(accum):
            batch = self._next_batch()
            lq = batch["lq"].to(self.device, non_blocking=True)
            gt = batch["gt"].to(self.device, non_blocking=True)
            last = micro == accum - 1
            sync = contextlib.nullcontext() if last or not self.dist.enabled else self.model.no_sync()
            with sync:
                with self._autocast():
                    out = self.model(lq)
                loss = self.loss_fn(out, gt) / accum
                (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
            loss_sum += loss.detach()
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        params = [p for p in self.module.parameters() if p.grad is not None]
        norm = grad_norm(params)
        if self.recipe["optim"]["grad_clip"] > 0:
            clip_grads(params, self.recipe["optim"]["grad_clip"], norm)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)  # skips the update itself when gradients overflowed
            self.scaler.update()
        elif torch.isfinite(norm):
            self.optimizer.step()
            self._bad_steps = 0
        else:
            self._bad_steps += 1
            log.warning("iteration %d: non-finite gradients, update skipped", self.step + 1)
            if self._bad_steps >= 10:
                raise RuntimeError("training diverged: 10 iterations in a row had non-finite gradients")
        self.step += 1
        return loss_sum, norm

    # ------------------------------------------------------------------ validation
    @torch.no_grad()
    def validate(self) -> float:
        """Mean PSNR (RGB, 8-bit) over the validation sequences, shared out over processes."""
        self.module.eval()
        acc = torch.zeros(2, dtype=torch.float64)
        try:
            t = self.recipe["train"]
            scale = getattr(self.module, "scale", 1)

            def run(x: torch.Tensor) -> torch.Tensor:
                with self._autocast():
                    return self.module(x).float()

            for i in range(self.dist.rank, len(self.val_set), self.dist.world_size):
                item = self.val_set[i]
                lq = item["lq"].to(self.device)
                frames = restore_frames(
                    run,
                    lq,
                    scale=scale,
                    tile=(0, *t["val_tile"]),
                    overlap=(0, *t["val_tile_overlap"]),
                    device=self.device,
                    total=lq.shape[0],
                )
                out = torch.stack([f for _, f in frames])
                acc += torch.tensor([psnr(out.cpu(), item["gt"]), 1.0], dtype=torch.float64)
        finally:
            self.module.train()
        D.all_reduce(acc)
        return float(acc[0] / acc[1]) if acc[1] > 0 else float("nan")

    # ------------------------------------------------------------------ checkpoints
    def _fingerprint(self) -> float:
        with torch.no_grad():
            return float(
                sum(p.detach().double().sum() + p.detach().double().square().sum() for p in self.module.parameters())
            )

    def _save(self) -> Path | None:
        mine = rng_state(self.loader_gen, self.device)
        if self._loader_state is not None:
            mine["loader"] = self._loader_state
        rngs = D.all_gather_object(mine)
        prints = D.all_gather_object(self._fingerprint())
        if len(set(prints)) > 1:
            raise RuntimeError(f"the processes' weights differ at iteration {self.step} (fingerprints {prints})")
        path = None
        if self.main:
            t = self.recipe["train"]
            state = {
                "format": CHECKPOINT_FORMAT,
                "step": self.step,
                "epoch": self.epoch,
                "batches_in_epoch": self.batches_in_epoch,
                "world_size": self.dist.world_size,
                "micro_batch": self.micro_bs,
                "model": self.module.state_dict(),
                "optimizer": self.optimizer.state_dict(),
                "scaler": self.scaler.state_dict() if self.scaler is not None else {},
                "rng": rngs,
                "best": dict(self.best),
                "recipe": dumps_toml(self.recipe),
                "torch_version": str(torch.__version__),
            }
            path = self.out_dir / "checkpoints" / f"step_{self.step:08d}.pt"
            atomic_write(path, lambda tmp: torch.save(state, tmp))
            old = find_checkpoints(self.out_dir)
            for p in old[: -t["keep_last"]] if t["keep_last"] > 0 else []:
                p.unlink()
            self._info("saved %s", path)
        D.barrier()
        self._last_ckpt = path
        return path

    def _load(self, path: Path) -> None:
        try:
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as err:  # corrupt, truncated or not a checkpoint
            raise InputError(f"cannot read checkpoint {path}: {str(err).strip().splitlines()[0]}") from err
        if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
            raise InputError(f"{path} is not an rvrt training checkpoint")
        load_into(self.module, state["model"], source=f"checkpoint {path}")
        try:
            self.optimizer.load_state_dict(state["optimizer"])
        except ValueError as err:
            raise InputError(
                f"the optimiser state of {path} does not fit this recipe (optim.lr_mul changed?): {err}"
            ) from err
        o = self.recipe["optim"]
        for g in self.optimizer.param_groups:  # the recipe, not the checkpoint, sets the rates
            g["base_lr"] = o["lr"] * o["lr_mul"].get(g["group"], 1.0)
        if self.scaler is not None and state["scaler"]:
            self.scaler.load_state_dict(state["scaler"])
        self.step, self.epoch = int(state["step"]), int(state["epoch"])
        self.batches_in_epoch, self.best = int(state["batches_in_epoch"]), dict(state["best"])
        same_layout = state["world_size"] == self.dist.world_size and state["micro_batch"] == self.micro_bs
        if same_layout:
            set_rng_state(state["rng"][self.dist.rank], self.loader_gen, self.device)
        else:  # keep the epoch's progress in samples; exactness needs the same layout
            samples = self.batches_in_epoch * state["micro_batch"] * state["world_size"]
            self.batches_in_epoch = samples // (self.micro_bs * self.dist.world_size)
            log.warning(
                "resuming with %d process(es) x batch %d instead of %d x %d: data order and random "
                "streams continue approximately",
                self.dist.world_size,
                self.micro_bs,
                state["world_size"],
                state["micro_batch"],
            )
        before = loads_toml(state["recipe"], f"recipe in {path}")
        changed = sorted(k for k in set(before) | set(self.recipe) if before.get(k) != self.recipe.get(k))
        if changed:
            log.warning("the recipe differs from the checkpoint's in: %s", ", ".join(changed))
        self._info("resumed from %s at iteration %d (epoch %d)", path, self.step, self.epoch)

    def _export(self, name: str) -> Path | None:
        if not self.main:
            return None
        return export_weights(
            self.module,
            self.out_dir / name,
            arch=self.arch,
            kwargs=self.kwargs,
            name=self.recipe["name"],
            step=self.step,
        )

    # ------------------------------------------------------------------ loop
    def _info(self, *args: Any) -> None:
        if self.dist.is_main:
            log.info(*args)

    def _install_signals(self) -> dict[int, Any]:
        if threading.current_thread() is not threading.main_thread():
            return {}

        def handler(signum: int, frame: Any) -> None:
            if self._stop_signal is not None and signum == signal.SIGINT:
                raise KeyboardInterrupt
            self._stop_signal = signum
            log.warning(
                "%s: finishing this iteration, then saving a checkpoint (Ctrl-C again to abort)",
                signal.Signals(signum).name,
            )

        return {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}

    def _log(self, record: dict[str, Any]) -> None:
        if not self.main:
            return
        with open(self.out_dir / "metrics.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")
        if self.tb is not None:
            for k, v in record.items():
                if k != "step" and isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, record["step"])

    def fit(self) -> TrainResult:
        """Train until the recipe's iterations are done, ``until`` is reached or a signal arrives."""
        started_pg = not torch.distributed.is_initialized()
        previous = self._install_signals()
        threads = torch.get_num_threads()
        try:
            self._setup()
            return self._loop()
        finally:
            torch.set_num_threads(threads)  # train.threads is for this run only
            for s, h in previous.items():
                signal.signal(s, h)
            if getattr(self, "tb", None) is not None:
                self.tb.close()
            if started_pg:
                D.teardown()

    def _loop(self) -> TrainResult:
        from tqdm import tqdm

        t = self.recipe["train"]
        total = t["iterations"]
        end = min(total, self.until) if self.until else total
        bar = tqdm(
            total=total, initial=self.step, unit="it", dynamic_ncols=True, disable=not (self.main and self.progress)
        )
        window, window_n, tic, cpu_tic = torch.zeros(()), 0, time.perf_counter(), time.process_time()
        status = "finished"
        try:
            while self.step < end:
                self._apply_freeze()
                try:
                    loss, norm = self._train_step()
                except RuntimeError as err:
                    if "find_unused_parameters" not in str(err):
                        raise
                    raise InputError(
                        "some parameters got no gradient, which DDP does not allow by default (an RVRT trained on "
                        "2-frame clips never uses its alignment modules); set train.find_unused_parameters=true "
                        "or train on longer clips"
                    ) from err
                window, window_n = window + loss.float().cpu(), window_n + 1
                bar.update(1)
                stop = torch.tensor([1.0 if self._stop_signal is not None else 0.0])
                if self.dist.enabled:
                    D.all_reduce(stop, op="max")
                if t["log_every"] and (self.step % t["log_every"] == 0 or self.step == end):
                    mean = D.all_reduce(window.clone()) / (window_n * self.dist.world_size)
                    lr = next(
                        (g["lr"] for g in self.optimizer.param_groups if g["group"] == "default"),
                        self.optimizer.param_groups[0]["lr"],
                    )
                    rate = window_n / max(time.perf_counter() - tic, 1e-9)
                    cpu = (time.process_time() - cpu_tic) / window_n
                    self._log(
                        {
                            "step": self.step,
                            "loss": float(mean),
                            "lr": lr,
                            "grad_norm": float(norm),
                            "it_per_s": rate,
                            "cpu_s_per_it": cpu,
                            "epoch": self.epoch,
                        }
                    )
                    bar.set_postfix(loss=f"{float(mean):.4g}", lr=f"{lr:.2e}")
                    window, window_n, tic, cpu_tic = torch.zeros(()), 0, time.perf_counter(), time.process_time()
                if self.val_set is not None and t["val_every"] and self.step % t["val_every"] == 0:
                    value = self.validate()
                    self._log({"step": self.step, "val_psnr": value})
                    self._info("iteration %d: validation PSNR %.3f dB", self.step, value)
                    if not self.best or value > self.best["psnr"]:
                        self.best = {"psnr": value, "step": self.step}
                        self._export("best.safetensors")
                if stop.item() > 0:
                    status = "interrupted"
                    break
                if t["save_every"] and self.step % t["save_every"] == 0 and self.step < end:
                    self._save()
        finally:
            bar.close()
        if status == "finished" and self.step < total:
            status = "paused"
        self._save()
        weights = self._export("final.safetensors") if status == "finished" else None
        D.barrier()
        return TrainResult(
            status=status,
            step=self.step,
            iterations=total,
            out_dir=self.out_dir,
            checkpoint=self._last_ckpt,
            weights=weights,
            best=dict(self.best),
        )
