"""One prepared GPU suite: every GPU check of issue 12 in one command, a markdown table per section.

On the GPU machine (torch and triton installed there, no network, PyAV perhaps absent), from the
repository root::

    PYTHONPATH=src python benchmarks/gpu_suite.py --device cuda --out /tmp/gpu_suite

It takes at most ``--budget-s`` (default 420 s) plus ``--grace-s`` (default 60 s) and writes
``summary.md`` (device, date, versions, commit, command, each section's status and time) and one
``<key>_<name>.md`` per section into ``--out``. On a CPU, reduced (tiny configs of the same
architectures, a few pixels and frames; CI runs it, tests/benchmarks/test_gpu_suite.py)::

    python benchmarks/gpu_suite.py --device cpu --quick --out /tmp/gpu_suite

Sections (``--list``; ``--sections a,c`` runs a subset), run in the order a b c e f g d:

a. the Triton GDA tests (tests/ops/test_gda_triton*.py) in a pytest subprocess, compiled on CUDA;
b. RVRT-001 (``rvrt.sr_bi_reds``) with Triton GDA against the reference GDA, fp32 / bf16 / fp16;
c. GDA alone at RVRT-001 shapes: Triton, reference and the official im2col algorithm, time and peak memory;
d. RVRT-001 and ``rvrt.sr_small`` at 320x180, 16 and 30 frames, fp32 / bf16 / fp16, eager, then with the
   package's compile option (rvrt.inference.stages.model_runner, which needs PyAV to import) while time lasts;
e. the memory model behind ``--tile auto`` against the measured peak;
f. ``--tile auto`` on a 1280x720 clip: the tile the planner picks, whether it fits, speed, peak
   (``rvrt.restore_iter``; without PyAV the planner and the runner's streaming engine directly);
g. the official RVRT with its own CUDA op beside ours (only with ``RVRT_OFFICIAL_DIR``, an extracted
   official checkout; its code is imported from a patched temporary copy and is never part of this
   project; building its op takes minutes: give it ``--sections g`` or a larger ``--budget-s``).

Each section runs in its own process (a crash or a broken CUDA context ends that section only), writes
its table row by row (a killed run keeps the rows done), and is recorded as pass, partial (rows cut by
the time budget), skip or fail with a one-line reason; the exit status is 1 if a section failed.
Sections start only while the budget lasts; a section still running at budget + grace is stopped.
Weights: random with a fixed seed (the speed does not depend on them), ``rvrt.sr_small``'s shipped
ones, or the official files in ``RVRT_WEIGHTS_DIR``. ``RVRT_GPU_SUITE_NO_AV=1`` hides PyAV, as on a GPU
machine without it; ``RVRT_GPU_SUITE_FAULT=<key>=raise|crash|sleep:<s>`` breaks a section (tests only).
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import gc
import importlib
import importlib.abc
import json
import os
import platform
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SRC = ROOT / "src"
RESULT_MARK = "GPU_SUITE_RESULT "
NO_AV_ENV = "RVRT_GPU_SUITE_NO_AV"
FAULT_ENV = "RVRT_GPU_SUITE_FAULT"
DTYPE_NAMES = ("fp32", "bf16", "fp16")
#: the registered models the sections run: RVRT-001 and the built-in one
RVRT_001, SR_SMALL = "rvrt.sr_bi_reds", "rvrt.sr_small"
#: --quick: the same architectures, narrow and shallow, so that a CPU runs a call in about a second
QUICK_KWARGS = dict(
    embed_dims=[12, 12, 12], num_heads=[2, 2, 2], attention_heads=2, deformable_groups=2, depths=[1, 1, 1],
    num_blocks=[1, 1, 1],
)  # fmt: skip


class Skip(Exception):
    """A section or row that does not apply here (the message says why)."""


# ---------------------------------------------------------------------------------------------- tables


def cell(value: object) -> str:
    """A markdown table cell: one line, no column breaks."""
    return " ".join(str(value).split()).replace("|", "\\|")


def one_line(err: BaseException) -> str:
    lines = [ln for ln in str(err).splitlines() if ln.strip()]
    return f"{type(err).__name__}: {lines[0] if lines else ''}"[:300]


class Table:
    """A section's markdown file, rewritten after every row (a killed run keeps what was done)."""

    def __init__(self, path: Path, title: str, columns: list[str], intro: list[str] | None = None) -> None:
        self.path, self.title, self.columns = path, title, columns
        self.intro = list(intro or [])
        self.rows: list[list[str]] = []
        self.notes: list[str] = []
        self.write()

    def row(self, *cells: object) -> None:
        if len(cells) > len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns in {self.path.name}")
        self.rows.append([cell(c) for c in cells] + [""] * (len(self.columns) - len(cells)))
        self.write()

    def note(self, text: str) -> None:
        self.notes.append(text)
        self.write()

    def write(self) -> None:
        lines = [f"# {self.title}", "", *self.intro, ""] if self.intro else [f"# {self.title}", ""]
        lines += ["| " + " | ".join(self.columns) + " |", "|" + "|".join("---" for _ in self.columns) + "|"]
        lines += ["| " + " | ".join(r) + " |" for r in self.rows]
        if self.notes:
            lines += ["", *(f"- {n}" for n in self.notes)]
        tmp = self.path.with_name(self.path.name + ".tmp")
        tmp.write_text("\n".join(lines) + "\n")
        tmp.replace(self.path)


def fmt(value: float | None, spec: str = ".2f") -> str:
    return "-" if value is None else format(value, spec)


# ---------------------------------------------------------------------------------------------- context


@dataclass
class Ctx:
    """What a section runs with: device, mode, where its table goes, when the budget ends."""

    device: str
    quick: bool
    out: Path
    deadline: float  # time.time() at which the suite's budget ends
    errors: int = 0
    cut: int = 0  # rows not run for want of time
    notes: list[str] = field(default_factory=list)

    @property
    def cuda(self) -> bool:
        return self.device.startswith("cuda")

    def left(self) -> float:
        return self.deadline - time.time()

    def sync(self) -> None:
        if self.cuda:
            import torch

            torch.cuda.synchronize()

    def free(self) -> None:
        gc.collect()
        if self.cuda:
            import torch

            torch.cuda.synchronize()
            torch.cuda.empty_cache()

    def attempt(self, table: Table, label: list[object], fn: Callable[[], list[object]], need_s: float = 0) -> bool:
        """One row: ``label`` cells, then what ``fn`` returns; a skip, a lack of time, out-of-memory or
        an error becomes the row's text (errors and out-of-memory fail the section). True if it ran."""
        if self.left() < need_s:
            self.cut += 1
            table.row(*label, "skipped: time budget")
            return False
        try:
            table.row(*label, *fn())
            return True
        except Skip as why:
            table.row(*label, f"skipped: {why}")
        except Exception as err:  # noqa: BLE001  (a row's failure is recorded; the others still run)
            traceback.print_exc()
            self.errors += 1
            what = "out of memory" if _is_oom(err) else "error"
            table.row(*label, f"{what}: {one_line(err)}")
        finally:
            self.free()
        return False


def _is_oom(err: BaseException) -> bool:
    import torch

    oom = getattr(torch, "OutOfMemoryError", None) or torch.cuda.OutOfMemoryError
    return isinstance(err, oom) or "out of memory" in str(err).lower()


def have_av() -> bool:
    try:
        import av  # noqa: F401
    except ImportError:
        return False
    return True


class _HideAV(importlib.abc.MetaPathFinder):
    """``import av`` fails, as on a machine without PyAV (``RVRT_GPU_SUITE_NO_AV=1``)."""

    def find_spec(self, name, path=None, target=None):
        if name == "av" or name.startswith("av."):
            raise ModuleNotFoundError(f"No module named {name!r} ({NO_AV_ENV}=1 hides PyAV)", name=name)
        return None


def torch_dtype(name: str):
    import torch

    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[name]


def dtype_support(ctx: Ctx, name: str) -> None:
    """Raise :class:`Skip` if ``name`` cannot run on the device."""
    import torch

    if ctx.cuda and name == "bf16" and not torch.cuda.is_bf16_supported():
        raise Skip("this GPU has no bf16")


def model_spec(name: str, quick: bool):
    """The registered spec, or in ``--quick`` the same architecture narrowed (no weights)."""
    from rvrt import zoo

    spec = zoo.get_spec(name)
    if not quick:
        return spec
    kwargs = {**spec.kwargs, **QUICK_KWARGS}
    return dataclasses.replace(spec, name=f"{spec.name}-tiny", kwargs=kwargs, weights=None, params=None)


def weights_for(spec) -> tuple[str | None, str]:
    """Weights to load (None: seeded random) and a note saying which."""
    if spec.weights is None:
        return None, "random (seed 0, offset heads non-zero)"
    if spec.weights.bundled:
        return "official", "the weights shipped with rvrt"
    folder = os.environ.get("RVRT_WEIGHTS_DIR")
    if folder and (Path(folder) / spec.weights.filename).is_file():
        return str(Path(folder) / spec.weights.filename), f"official ({spec.weights.filename} from RVRT_WEIGHTS_DIR)"
    return None, f"random (seed 0, offset heads non-zero; {spec.weights.filename} not in RVRT_WEIGHTS_DIR)"


def build_model(spec, ctx: Ctx):
    from bench_model import build

    weights, note = weights_for(spec)
    return build(spec, ctx.device, weights=weights), note


def synthetic_clip(ctx: Ctx, t: int, h: int, w: int):
    from bench_model import clip

    return clip(t, h, w, ctx.device)


def set_gda_backend(net, backend: str) -> int:
    """Point every guided deformable attention of ``net`` at ``backend``; how many there are."""
    mods = [m for m in net.modules() if hasattr(m, "gda_backend")]
    for m in mods:
        m.gda_backend = backend
    return len(mods)


def plain_runner(net, device: str, dtype):
    """The model call of :func:`rvrt.inference.stages.model_runner` without compile, for a machine
    where that module cannot be imported (it needs PyAV)."""
    from bench_model import run_once

    return lambda x: run_once(net, x.to(device), dtype, device)


def public_runner(net, ctx: Ctx, dtype, compile: bool = False) -> tuple[Callable, str]:
    """The package's own model call (``model_runner``, with its ``compile`` option); without PyAV
    the plain call, and compile raises :class:`Skip`."""
    import torch

    try:
        from rvrt.inference.stages import model_runner
    except ImportError as err:
        if compile:
            raise Skip(f"the public compile option (rvrt.inference.stages) cannot be imported: {err}") from err
        return plain_runner(net, ctx.device, dtype), "plain call (rvrt.inference.stages needs PyAV)"
    run = model_runner(net, device=torch.device(ctx.device), dtype=dtype, compile=compile)
    return run, "rvrt.inference.stages.model_runner"


class Captured:
    """Warnings and rvrt log records during a block (fallbacks, refusals, recompiles), as one line."""

    def __enter__(self) -> Captured:
        import logging
        import warnings

        self.messages: list[str] = []
        self._warn = warnings.catch_warnings(record=True)
        self._records = self._warn.__enter__()
        warnings.simplefilter("always")
        outer = self

        class Handler(logging.Handler):
            def emit(self, record: logging.LogRecord) -> None:
                outer.messages.append(f"{record.levelname.lower()}: {record.getMessage()}")

        # rvrt's fallbacks are told at INFO; torch.compile's recompiles and graph breaks at WARNING
        self._hooks = [(logging.getLogger("rvrt"), Handler(logging.INFO)),
                       (logging.getLogger("torch._dynamo"), Handler(logging.WARNING))]  # fmt: skip
        self._level = self._hooks[0][0].level
        for lg, handler in self._hooks:
            lg.addHandler(handler)
        if not self._level or self._level > logging.INFO:
            self._hooks[0][0].setLevel(logging.INFO)
        return self

    def __exit__(self, *exc) -> None:
        for lg, handler in self._hooks:
            lg.removeHandler(handler)
        self._hooks[0][0].setLevel(self._level)
        self.messages += [f"warning: {w.message}" for w in self._records]
        self._warn.__exit__(*exc)

    def text(self, limit: int = 240) -> str:
        seen = list(dict.fromkeys(" ".join(m.split()) for m in self.messages))
        return "; ".join(seen)[:limit]


def rel_l2(y, ref) -> float:
    return ((y.double() - ref.double()).norm() / ref.double().norm().clamp_min(1e-30)).item()


def max_abs(y, ref) -> float:
    return (y.double() - ref.double()).abs().max().item()


# ---------------------------------------------------------------------------------------------- sections


def parse_pytest(out: str) -> tuple[list[tuple[str, str, str]], dict[str, int]]:
    """``pytest -rA`` output: (outcome, test, message) per test, and the counts of its last line."""
    rows = []
    for line in out.splitlines():
        m = re.match(r"^(PASSED|FAILED|ERROR|SKIPPED|XFAIL|XPASS) (?:\[\d+\] )?(\S+?)(?::? - |: |$)(.*)", line)
        if m:
            rows.append((m.group(1).lower(), m.group(2), m.group(3)))
    counts = dict.fromkeys(("passed", "failed", "errors", "skipped"), 0)
    tail = [ln for ln in out.splitlines() if re.search(r"\d+ (passed|failed|error|skipped|deselected)", ln)]
    for n, what in re.findall(r"(\d+) (passed|failed|errors?|skipped)", tail[-1] if tail else ""):
        counts["errors" if what.startswith("error") else what] = int(n)
    return rows, counts


def section_a(ctx: Ctx) -> str:
    """The Triton GDA tests in a pytest subprocess (compiled kernels on CUDA, the interpreter on CPU)."""
    table = Table(ctx.out / "a_triton_tests.md", "a. Triton GDA tests", ["outcome", "test", "message"])
    try:
        importlib.import_module("triton")
    except ImportError as err:
        raise Skip(f"triton cannot be imported ({err})") from err
    files = ["tests/ops/test_gda_triton.py", "tests/ops/test_gda_triton_model.py"]
    cmd = [sys.executable, "-m", "pytest", *files, "-q", "-rA", "-p", "no:cacheprovider"]
    if ctx.quick:  # the interpreter runs Python per program: two small tests
        cmd += ["-k", "test_non_contiguous_inputs or test_float64_is_refused_with_a_reason"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]))
    if not ctx.cuda:
        env["CUDA_VISIBLE_DEVICES"] = ""  # --device cpu: the CUDA cases skip
    stub = None
    if not have_av():  # tests/conftest.py imports tests/media.py, which imports av at the top
        stub = Path(tempfile.mkdtemp(prefix="gpu_suite_av_"))
        (stub / "av").mkdir()
        (stub / "av" / "__init__.py").write_text(
            '"""Stand-in written by benchmarks/gpu_suite.py: PyAV is not installed, and the GDA tests need none."""\n'
            "def __getattr__(name):\n"
            "    raise AttributeError(f'PyAV is not installed (av.{name}; stand-in from gpu_suite)')\n"
        )
        env["PYTHONPATH"] = os.pathsep.join([str(stub), env["PYTHONPATH"]])
        table.note("PyAV is missing: the tests ran with a stand-in `av` module (tests/media.py imports av at the top)")
    table.note("command: `" + " ".join(shlex.quote(c) for c in cmd[1:]) + "`")
    try:
        proc = subprocess.run(
            cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=max(ctx.left(), 30)
        )  # fmt: skip
    finally:
        if stub is not None:
            shutil.rmtree(stub, ignore_errors=True)
    out = proc.stdout + proc.stderr
    print(out[-6000:])
    rows, counts = parse_pytest(out)
    for r in rows:
        table.row(*r)
    summary = ", ".join(f"{v} {k}" for k, v in counts.items())
    table.note(f"pytest exit status {proc.returncode}: {summary}")
    if proc.returncode != 0 or counts["failed"] or counts["errors"] or not counts["passed"]:
        raise RuntimeError(f"pytest exit status {proc.returncode}: {summary}")
    return summary


def section_b(ctx: Ctx) -> str:
    """RVRT-001 with Triton GDA against the reference GDA: fp32, and bf16/fp16 against the fp32 reference."""
    import torch

    spec = model_spec(RVRT_001, ctx.quick)
    t, h, w = (2, 16, 16) if ctx.quick else (6, 128, 128)
    net, weights = build_model(spec, ctx)
    n_gda = set_gda_backend(net, "reference")
    x = synthetic_clip(ctx, t, h, w)
    table = Table(
        ctx.out / "b_model_agreement.md",
        "b. RVRT-001: Triton GDA against the reference GDA",
        ["gda", "dtype", "s", "max abs vs fp32 reference", "rel L2 vs fp32 reference", "check", "note"],
        [f"{spec.name}, {n_gda} GDA modules, {t} frames of {h}x{w} LR on {ctx.device}, weights: {weights}; "
         "s: one call (Triton's first includes compiling its kernels; section d has the speed).",
         "check: Triton fp32 within rel L2 1e-3 of the reference; Triton half precision within 3x (+1e-3) of the "
         "reference's own half-precision error."],
    )  # fmt: skip
    ref: dict[str, torch.Tensor] = {}
    errors: dict[tuple[str, str], float] = {}
    rows = [(d, b) for d in (("fp32", "bf16") if ctx.quick else DTYPE_NAMES) for b in ("reference", "triton")]
    for dname, backend in rows:

        def run(dname=dname, backend=backend) -> list[object]:
            dtype_support(ctx, dname)
            if backend == "triton":
                from bench_gda import triton_skip_reason

                reason = triton_skip_reason(ctx.device, torch_dtype(dname))
                if reason:
                    raise Skip(reason)
            if "fp32" not in ref and (dname, backend) != ("fp32", "reference"):
                raise Skip("no fp32 reference output")
            set_gda_backend(net, backend)
            with Captured() as cap:
                ctx.sync()
                t0 = time.perf_counter()
                from bench_model import run_once

                y = run_once(net, x, torch_dtype(dname), ctx.device)
                seconds = time.perf_counter() - t0
            if not torch.isfinite(y).all():
                raise RuntimeError(f"{backend} {dname}: the output holds inf/nan")
            if "fp32" not in ref:
                ref["fp32"] = y
            err = rel_l2(y, ref["fp32"])
            errors[(dname, backend)] = err
            check = "-"
            if backend == "triton":
                limit = 1e-3 if dname == "fp32" else 3 * errors.get((dname, "reference"), 0.0) + 1e-3
                check = "ok" if err <= limit else f"FAIL (> {limit:.1e})"
                if err > limit:
                    ctx.errors += 1
            return [f"{seconds:.3f}", f"{max_abs(y, ref['fp32']):.2e}", f"{err:.2e}", check, cap.text()]

        ctx.attempt(table, [backend, dname], run)
    set_gda_backend(net, "auto")
    return f"{len(errors)} of {len(rows)} rows ran"


def section_c(ctx: Ctx) -> str:
    """GDA alone at RVRT-001 shapes (benchmarks/bench_gda.py): Triton, reference, im2col."""
    import bench_gda

    # --quick: RVRT-001's heads and groups, narrower channels
    p = bench_gda.Problem(c=48, h=4, w=6) if ctx.quick else bench_gda.Problem(h=180, w=320)
    repeat = 1 if ctx.quick else 10
    table = Table(
        ctx.out / "c_gda.md",
        "c. Guided deformable attention at RVRT-001 shapes",
        ["impl", "dtype", "fwd ms", "fwd peak MiB", "fwd+bwd ms", "fwd+bwd peak MiB", "max abs err out",
         "max rel err grads", "fwd speed-up vs im2col", "fwd+bwd speed-up vs im2col"],
        [f"B={p.n * p.clip} C={p.c} heads={p.heads} groups={p.groups} {p.kernel[0]}x{p.kernel[1]} clip={p.clip} "
         f"{p.h}x{p.w} on {ctx.device}; median of {repeat} after a warm-up"
         f"{' (CUDA events)' if ctx.cuda else ''}; peak memory above the level at entry; errors against the "
         "reference in float64 on the same rounded inputs. im2col: the official op's algorithm in PyTorch "
         "(benchmarks/baselines.py)."],
    )  # fmt: skip
    ran = 0
    for dname in ("fp32",) if ctx.quick else ("fp32", "bf16"):
        base: dict[str, float] = {}
        truth: dict = {}
        for impl in ("im2col", "reference", "triton"):

            def run(dname=dname, impl=impl, base=base, truth=truth) -> list[object]:
                dtype_support(ctx, dname)
                dtype = torch_dtype(dname)
                if impl == "triton":
                    reason = bench_gda.triton_skip_reason(ctx.device, dtype)
                    if reason:
                        raise Skip(reason)
                if not truth:
                    truth.update(bench_gda.float64_truth(p, ctx.device, dtype))
                r = bench_gda.bench_one(impl, p, ctx.device, dtype, repeat, truth)
                if impl == "im2col":
                    base.update(fwd=r["fwd_ms"], fwdbwd=r["fwdbwd_ms"])
                speed = [f"{base[k] / r[k + '_ms']:.2f}" if base else "-" for k in ("fwd", "fwdbwd")]
                return [f"{r['fwd_ms']:.3f}", f"{r['fwd_mib']:.1f}", f"{r['fwdbwd_ms']:.3f}", f"{r['fwdbwd_mib']:.1f}",
                        f"{r['err_out']:.2e}", f"{r['err_grad']:.2e}", *speed]  # fmt: skip

            ran += ctx.attempt(table, [impl, dname], run)
    return f"{ran} rows ran"


def _model_row(ctx: Ctx, net, x, dname: str, compile: bool, repeat: int, ref: dict, key) -> list[object]:
    """One row of section d: the first call (it compiles), then ``repeat`` timed calls inside a peak-memory
    probe (``repeat=0``: the first call is timed and probed, for --quick)."""
    import torch
    from bench_gda import PeakMemory, time_ms

    dtype_support(ctx, dname)
    if compile:
        torch._dynamo.reset()  # one model, dtype and clip per compile: no cache limit, no stale graphs
    with Captured() as cap:
        run, how = public_runner(net, ctx, torch_dtype(dname), compile=compile)
        with PeakMemory(ctx.device) as first:
            t0 = time.perf_counter()
            y = run(x)
            ctx.sync()
            first_s = time.perf_counter() - t0
        mem, ms = first, first_s * 1e3
        if repeat:
            with PeakMemory(ctx.device) as mem:
                ms = time_ms(lambda: run(x), ctx.device, repeat, warmup=0)
    if not torch.isfinite(y).all():
        raise RuntimeError("the output holds inf/nan")
    if dname == "fp32" and not compile:
        ref[key] = y
    diff = f"{max_abs(y, ref[key]):.2e}" if key in ref else "-"
    t = x.shape[1]
    note = "; ".join(s for s in (how, cap.text()) if s)
    return [f"{first_s:.2f}", f"{ms / 1e3:.3f}", f"{t / (ms / 1e3):.2f}", f"{mem.peak / 2**20:.0f}", diff, note]


def section_d(ctx: Ctx) -> str:
    """Whole models: frames/s, peak memory and output difference, eager and with the public compile option."""
    if ctx.quick:
        frames, size, repeat, dtypes = (2,), (16, 16), 0, ("fp32",)
    else:
        frames, size, repeat, dtypes = (16, 30), (180, 320), 3, DTYPE_NAMES
    h, w = size
    table = Table(
        ctx.out / "d_models.md",
        "d. Whole models: speed, peak memory, output difference",
        ["model", "frames", "dtype", "compile", "first call s", "s per clip", "frames/s", "peak MiB",
         "max abs diff vs fp32 eager", "note"],
        [f"LR {h}x{w} on {ctx.device}; median of {repeat or 1} call(s) after the first (which compiles; --quick: "
         "the first call only); peak memory above "
         "the level at entry (weights and input excluded). compile: the package's public option "
         "(rvrt.inference.stages.model_runner(compile=True)), whatever it does on this device."],
    )  # fmt: skip
    models = []
    for name in (RVRT_001, SR_SMALL):
        spec = model_spec(name, ctx.quick)
        net, weights = build_model(spec, ctx)
        table.note(f"{spec.name}: weights {weights}")
        models.append((spec, net))
    ref: dict = {}
    ran = 0
    eager = [(s, n, t, d) for s, n in models for t in frames for d in dtypes]
    if ctx.quick:  # one row per model, one of them in half precision
        eager = [(*models[0], frames[0], "fp32"), (*models[1], frames[0], "bf16")]
    for spec, net, t, dname in eager:  # eager first: compiling can take minutes
        x = synthetic_clip(ctx, t, h, w)
        row = lambda net=net, x=x, d=dname, k=(spec.name, t): _model_row(ctx, net, x, d, False, repeat, ref, k)
        ran += ctx.attempt(table, [spec.name, t, dname, "no"], row)
    if ctx.quick:
        table.note("compile rows: not in --quick (torch.compile of these models takes minutes on a CPU)")
    else:  # most telling first: bf16 and fp32 at 16 frames, then the rest
        order = sorted(eager, key=lambda r: (r[2] != 16, {"bf16": 0, "fp32": 1, "fp16": 2}[r[3]]))
        for spec, net, t, dname in order:
            x = synthetic_clip(ctx, t, h, w)
            row = lambda net=net, x=x, d=dname, k=(spec.name, t): _model_row(ctx, net, x, d, True, repeat, ref, k)
            ran += ctx.attempt(table, [spec.name, t, dname, "yes"], row, need_s=60)
    return f"{ran} rows ran"


def section_e(ctx: Ctx) -> str:
    """The memory model's prediction against the measured peak (bench_memory_model.py: a process per point)."""
    import bench_memory_model as bmm
    import torch

    if ctx.quick:
        points = [(RVRT_001, 2, 16, 16, "fp32")]
    else:
        points = [(RVRT_001, 6, 128, 128, "fp32"), (RVRT_001, 16, 180, 320, "fp32"), (RVRT_001, 16, 180, 320, "bf16"),
                  (RVRT_001, 30, 180, 320, "fp32"), (SR_SMALL, 30, 180, 320, "fp32")]  # fmt: skip
    what = "torch.cuda.max_memory_allocated" if ctx.cuda else "the resident set's growth"
    table = Table(
        ctx.out / "e_memory_model.md",
        "e. Memory model (--tile auto) against the measured peak",
        ["model", "T x H x W", "dtype", "measured MiB", "predicted MiB", "predicted / measured", "s", "check"],
        [f"Measured: {what} above the level before the call, one fresh process per point on {ctx.device}. "
         "check: UNDER where the model predicts less than measured (the planner could then pick a tile that "
         "does not fit)."],
    )  # fmt: skip
    under = 0
    ran = 0
    for name, t, h, w, dname in points:

        def run(name=name, t=t, h=h, w=w, dname=dname) -> list[object]:
            nonlocal under
            dtype_support(ctx, dname)
            spec = model_spec(name, ctx.quick)
            point = dict(arch=spec.arch, kwargs=spec.kwargs, t=t, h=h, w=w, dtype=dname)
            try:
                r = bmm.run_point(point, ctx.device, torch.get_num_threads(), SRC)
            except SystemExit as err:  # run_point's way of saying that the measurement failed
                raise RuntimeError(str(err).splitlines()[0]) from err
            pred = bmm.predict(r, ctx.device)
            ratio = pred / r["measured"] if pred and r["measured"] > 0 else None
            low = ratio is not None and ratio < 1
            under += low
            return [f"{r['measured'] / 2**20:.0f}", fmt(pred and pred / 2**20, ".0f"), fmt(ratio), r["seconds"],
                    "UNDER" if low else "ok"]  # fmt: skip

        ran += ctx.attempt(table, [model_spec(name, ctx.quick).name, f"{t}x{h}x{w}", dname], run)
    return f"{ran} points, {under} under-predicted"


def _restore_public(net, frames, ctx: Ctx, dname: str) -> tuple[int, str]:
    """``rvrt.restore_iter`` with ``tile="auto"``: output frames, and the warnings it gave (OOM back-offs)."""
    import rvrt

    with Captured() as cap:
        n = sum(1 for _ in rvrt.restore_iter(
            frames, model=net, tile="auto", device=ctx.device, dtype=dname, scene_cuts="off", progress=False
        ))  # fmt: skip
    return n, cap.text()


def _restore_planned(net, frames, plan, ctx: Ctx, dname: str) -> tuple[int, str]:
    """The planner's tile through the runner's streaming and tiling engine (no PyAV needed); no
    out-of-memory back-off, so a plan that does not fit fails here."""
    from rvrt.inference.temporal import restore_frames

    run, how = public_runner(net, ctx, torch_dtype(dname))
    with Captured() as cap:
        n = sum(1 for _ in restore_frames(
            run, iter(frames), scale=plan.scale, tile=plan.tile, overlap=plan.overlap, device=ctx.device,
            total=len(frames),
        ))  # fmt: skip
    return n, "; ".join(s for s in (how, cap.text()) if s)


def section_f(ctx: Ctx) -> str:
    """``--tile auto`` on a 1280x720 LR clip: the planner's tile, whether it fits, speed, peak memory."""
    import torch
    from bench_gda import PeakMemory

    from rvrt.compute import available_memory
    from rvrt.inference.options import StageOptions
    from rvrt.inference.planner import plan_stage

    t, h, w = (2, 24, 32) if ctx.quick else (6, 720, 1280)
    spec = model_spec(RVRT_001, ctx.quick)
    public = have_av()
    path = "rvrt.restore_iter(tile='auto')" if public else "planner + rvrt.inference.temporal.restore_frames"
    table = Table(
        ctx.out / "f_tile_auto.md",
        "f. --tile auto on a 1280x720 LR clip",
        ["dtype", "tile picked", "predicted GiB", "budget GiB", "frames out", "s", "frames/s", "peak MiB", "note"],
        [f"{spec.name}, {t} frames of {w}x{h} LR ({w * spec.scale}x{h * spec.scale} out) on {ctx.device}, through "
         f"{path}{'' if public else ' (PyAV is missing)'}. The tile is the planner's for half the available "
         "memory, as the runner plans; peak memory above the level at entry."],
    )  # fmt: skip
    net, weights = build_model(spec, ctx)
    table.note(f"weights: {weights}")
    frames = [f for f in synthetic_clip(ctx, t, h, w)[0].cpu()]
    ran = 0
    for dname in ("fp32",) if ctx.quick else ("fp32", "bf16"):

        def run(dname=dname) -> list[object]:
            dtype_support(ctx, dname)
            dev = torch.device(ctx.device)
            budget = int(0.5 * available_memory(dev))  # JobOptions.memory_fraction's default
            plan = plan_stage(spec, StageOptions("restore", model=net, tile="auto"), height=h, width=w, device=dev,
                              dtype=torch_dtype(dname), budget=budget, total=t)  # fmt: skip
            with PeakMemory(ctx.device) as mem:
                t0 = time.perf_counter()
                if public:
                    n, note = _restore_public(net, frames, ctx, dname)
                else:
                    n, note = _restore_planned(net, frames, plan, ctx, dname)
                ctx.sync()
                seconds = time.perf_counter() - t0
            if n != t:
                raise RuntimeError(f"{n} output frames for {t} input frames")
            return [plan.describe(), f"{plan.predicted_bytes / 2**30:.2f}", f"{budget / 2**30:.1f}", n,
                    f"{seconds:.2f}", f"{n / seconds:.2f}", f"{mem.peak / 2**20:.0f}", note]  # fmt: skip

        ran += ctx.attempt(table, [dname], run)
    return f"{ran} rows ran ({path})"


def _official_model(folder: Path, kwargs: dict, table: Table, cuda: bool):
    """The official RVRT class from a patched temporary copy of an extracted checkout (its CUDA op is
    built on import), for today's toolchain: no ``distutils`` (Python 3.12), no THC headers (PyTorch 2)."""
    if not (folder / "models" / "network_rvrt.py").is_file():
        raise RuntimeError(f"RVRT_OFFICIAL_DIR={folder} holds no models/network_rvrt.py")
    build = Path(tempfile.mkdtemp(prefix="rvrt_official_"))
    shutil.copytree(folder / "models", build / "models")
    patches = {
        ".py": ("from distutils.version import LooseVersion", "from packaging.version import Version as LooseVersion"),
        ".cu": ("#include <THC/THCAtomics.cuh>", "#include <ATen/cuda/Atomic.cuh>"),
    }
    for f in (build / "models").rglob("*"):
        if f.suffix in patches and patches[f.suffix][0] in f.read_text(errors="replace"):
            f.write_text(f.read_text().replace(*patches[f.suffix]))
            table.note(f"patched {f.relative_to(build)}: {patches[f.suffix][0]!r}")
    if cuda:
        import torch

        major, minor = torch.cuda.get_device_capability()
        os.environ.setdefault("TORCH_CUDA_ARCH_LIST", f"{major}.{minor}")
    os.environ.setdefault("MAX_JOBS", str(os.cpu_count() or 4))
    sys.path.insert(0, str(build))
    t0 = time.perf_counter()
    module = importlib.import_module("models.network_rvrt")
    table.note(f"official code imported (and its op built) in {time.perf_counter() - t0:.0f} s")
    return module.RVRT(**kwargs)


def section_g(ctx: Ctx) -> str:
    """The official RVRT (its own CUDA op) beside ours on the same input and weights."""
    import torch
    from bench_gda import PeakMemory, time_ms

    folder = os.environ.get("RVRT_OFFICIAL_DIR")
    if not folder:
        raise Skip("RVRT_OFFICIAL_DIR not set")
    spec = model_spec(RVRT_001, ctx.quick)
    t, h, w = (2, 16, 16) if ctx.quick else (16, 180, 320)
    repeat = 1 if ctx.quick else 3
    table = Table(
        ctx.out / "g_official.md",
        "g. The official RVRT beside rvrt",
        ["impl", "dtype", "frames", "s per clip", "frames/s", "peak MiB", "max abs diff vs official fp32",
         "speed vs official fp32"],
        [f"{spec.name}, {t} frames of {h}x{w} LR on {ctx.device}, official code from {folder}; median of {repeat} "
         f"{'(no warm-up, --quick)' if ctx.quick else 'after a warm-up'}; peak memory above the level at entry; "
         "the same weights and input in both."],
    )  # fmt: skip
    ours, weights = build_model(spec, ctx)
    table.note(f"weights: {weights}")
    official = _official_model(Path(folder), spec.kwargs, table, ctx.cuda)
    theirs, mine = official.state_dict(), ours.state_dict()
    missing = [k for k, _ in official.named_parameters() if k not in mine]
    if missing:
        raise RuntimeError(f"{len(missing)} official parameters not in rvrt's model, e.g. {missing[:3]}")
    official.load_state_dict({k: v for k, v in mine.items() if k in theirs}, strict=False)
    kept = [k for k in theirs if k not in mine]
    if kept:
        table.note(f"{len(kept)} official buffers keep their own values (not in rvrt's state dict), e.g. {kept[:2]}")
    official = official.to(ctx.device).eval()
    x = synthetic_clip(ctx, t, h, w)
    out: dict = {}

    def timed(fn, dname: str) -> list[object]:
        dtype_support(ctx, dname)
        dtype = torch_dtype(dname)

        def call():
            with torch.no_grad(), torch.autocast(ctx.device.split(":")[0], dtype=dtype, enabled=dname != "fp32"):
                out["y"] = fn(x)

        with PeakMemory(ctx.device) as mem:
            ms = time_ms(call, ctx.device, repeat, warmup=0 if ctx.quick else 1)
        y = out.pop("y").float()
        if "official" not in out:
            out["official"], out["official_ms"] = y, ms
        diff = max_abs(y, out["official"])
        return [f"{ms / 1e3:.3f}", f"{t / (ms / 1e3):.2f}", f"{mem.peak / 2**20:.0f}", f"{diff:.2e}",
                f"{out['official_ms'] / ms:.2f}x"]  # fmt: skip

    ctx.attempt(table, ["official", "fp32", t], lambda: timed(official, "fp32"))
    if "official" not in out:
        raise RuntimeError("the official model did not run")
    for dname in ("fp32", "bf16") if ctx.quick else DTYPE_NAMES:
        ctx.attempt(table, ["rvrt", dname, t], lambda dname=dname: timed(ours, dname))
    return "official and rvrt timed"


def official_gate() -> str | None:
    return None if os.environ.get("RVRT_OFFICIAL_DIR") else "skipped: RVRT_OFFICIAL_DIR not set"


@dataclass(frozen=True)
class Section:
    key: str
    filename: str
    title: str
    fn: Callable[[Ctx], str]
    #: checked before the section's process starts: a skip reason, or None
    gate: Callable[[], str | None] = lambda: None


#: the order they run in: whole-model timing (d), whose compile rows can take minutes each, last but for
#: the optional official comparison (g) before it, so that neither starves the quick sections
RUN_ORDER = "abcefgd"
SECTIONS = {
    s.key: s
    for s in (
        Section("a", "a_triton_tests.md", "Triton GDA tests (pytest subprocess)", section_a),
        Section("b", "b_model_agreement.md", "RVRT-001: Triton GDA vs reference GDA", section_b),
        Section("c", "c_gda.md", "GDA at RVRT-001 shapes: Triton, reference, im2col", section_c),
        Section("d", "d_models.md", "RVRT-001 and sr_small: speed, memory, eager and compiled", section_d),
        Section("e", "e_memory_model.md", "memory model against the measured peak", section_e),
        Section("f", "f_tile_auto.md", "--tile auto on a 1280x720 clip", section_f),
        Section("g", "g_official.md", "official RVRT beside ours (RVRT_OFFICIAL_DIR)", section_g, official_gate),
    )
}


# ---------------------------------------------------------------------------------------------- child


def _fault(key: str) -> None:
    """Test hook: ``RVRT_GPU_SUITE_FAULT=<key>=raise|crash|sleep:<s>`` breaks section ``key``."""
    spec = os.environ.get(FAULT_ENV, "")
    for item in filter(None, spec.split(",")):
        which, _, how = item.partition("=")
        if which != key:
            continue
        if how == "raise":
            raise RuntimeError(f"fault injected by {FAULT_ENV}")
        if how == "crash":
            os.abort()
        if how.startswith("sleep:"):
            time.sleep(float(how.split(":", 1)[1]))


def run_child(args: argparse.Namespace) -> int:
    """One section in this process; the last stdout line is its result."""
    if os.environ.get(NO_AV_ENV, "") not in ("", "0"):
        sys.meta_path.insert(0, _HideAV())
    sys.path.insert(0, str(SRC))
    sys.path.insert(0, str(HERE))
    if args.child == "env":
        print(RESULT_MARK + json.dumps(environment(args.device)), flush=True)
        return 0
    sec = SECTIONS[args.child]
    ctx = Ctx(device=args.device, quick=args.quick, out=args.out, deadline=args.deadline)
    try:
        _fault(sec.key)
        if ctx.cuda:
            import torch

            if not torch.cuda.is_available():
                raise Skip("needs CUDA (torch.cuda.is_available() is False)")
        note = sec.fn(ctx)
        status = "fail" if ctx.errors else "partial" if ctx.cut else "pass"
        if ctx.errors:
            note = f"{ctx.errors} row(s) failed; {note}"
        if ctx.cut:
            note = f"{ctx.cut} row(s) skipped: time budget; {note}"
    except Skip as why:
        status, note = "skip", f"skipped: {why}"
    except Exception as err:  # noqa: BLE001  (recorded; the parent goes on with the next section)
        traceback.print_exc()
        status, note = "fail", one_line(err)
    print(RESULT_MARK + json.dumps({"status": status, "note": note}), flush=True)
    return 0


def environment(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("triton", "av"):
        try:
            info[mod] = importlib.import_module(mod).__version__
        except ImportError:
            info[mod] = "not installed"
        except AttributeError:
            info[mod] = "installed"
    if device.startswith("cuda") and torch.cuda.is_available():
        props = torch.cuda.get_device_properties(torch.device(device))
        info["device"] = (
            f"{props.name} ({device}), compute capability {props.major}.{props.minor}, "
            f"{props.multi_processor_count} SMs, {props.total_memory / 2**30:.1f} GiB; CUDA {torch.version.cuda}"
        )
        info["tf32"] = (
            f"matmul {torch.backends.cuda.matmul.allow_tf32}, cudnn {torch.backends.cudnn.allow_tf32} (defaults kept)"
        )
    else:
        model = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
        except OSError:
            pass
        note = "" if device == "cpu" else f" ({device} requested but CUDA is not available)"
        info["device"] = f"CPU: {model}, {os.cpu_count()} cores, torch uses {torch.get_num_threads()} threads{note}"
    return info


# ---------------------------------------------------------------------------------------------- parent


def _pump(stream, prefix: str, sink: list[str]) -> None:
    for line in iter(stream.readline, ""):
        sink.append(line)
        print(f"[{prefix}] {line}", end="", flush=True)


@dataclass
class Child:
    """A section's process and the lines it printed so far (echoed with a ``[key]`` prefix)."""

    key: str
    proc: subprocess.Popen
    lines: list[str]
    pump: threading.Thread


_RUNNING: dict[str, Child] = {}


def _stop_children(signum, frame) -> None:
    """SIGTERM/SIGINT (``timeout`` around the suite): the sections' processes, in sessions of their own,
    would outlive it; end them first."""
    for child in list(_RUNNING.values()):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGKILL)
    raise SystemExit(128 + signum)


def start_child(key: str, args: argparse.Namespace, deadline: float) -> Child:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", key, "--device", args.device, "--out",
           str(args.out), "--deadline", repr(deadline)] + (["--quick"] if args.quick else [])  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(SRC), env.get("PYTHONPATH", "")])
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    lines: list[str] = []
    pump = threading.Thread(target=_pump, args=(proc.stdout, key, lines), daemon=True)
    pump.start()
    _RUNNING[key] = Child(key, proc, lines, pump)
    return _RUNNING[key]


def finish_child(child: Child, limit_s: float) -> tuple[dict, str]:
    """Wait for ``child`` at most ``limit_s``; its result, and its output (for the table of a failure)."""
    try:
        child.proc.wait(timeout=max(limit_s, 1))
        _RUNNING.pop(child.key, None)
    except subprocess.TimeoutExpired:
        _RUNNING.pop(child.key, None)
        os.killpg(child.proc.pid, signal.SIGKILL)  # the section's process and what it started (pytest)
        child.proc.wait()
        child.pump.join(5)
        return {"status": "fail", "note": f"stopped after {limit_s:.0f} s (time budget + grace)"}, "".join(child.lines)
    child.pump.join(5)
    output = "".join(child.lines)
    for line in reversed(child.lines):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK) :]), output
    last = next((ln.strip() for ln in reversed(child.lines) if ln.strip()), "")
    return {"status": "fail", "note": f"exit status {child.proc.returncode} without a result: {last[:200]}"}, output


def _finish_table(path: Path, title: str, result: dict, output: str) -> None:
    """A skipped section gets a file saying so; a failed one gets the end of its output."""
    if not path.exists():
        path.write_text(f"# {title}\n")
    if result["status"] in ("skip", "partial"):
        with path.open("a") as f:
            f.write(f"\n{result['note'] if result['status'] == 'skip' else 'partial: ' + result['note']}\n")
    if result["status"] == "fail" and output.strip():
        tail = "\n".join(output.rstrip().splitlines()[-40:])
        with path.open("a") as f:
            f.write(f"\n## {result['status']}: {result['note']}\n\nEnd of its output:\n\n```text\n{tail}\n```\n")


def write_summary(args, env: dict, started: float, results: dict[str, dict], argv: list[str]) -> None:
    commit = args.commit or git_commit()
    used = time.time() - started
    lines = [
        "# rvrt GPU suite",
        "",
        "| | |",
        "|---|---|",
        f"| device | {cell(env.get('device', '?'))} |",
        f"| date | {datetime.datetime.fromtimestamp(started, datetime.timezone.utc):%Y-%m-%d %H:%M UTC} |",
        f"| torch | {cell(env.get('torch', '?'))} |",
        f"| triton | {cell(env.get('triton', '?'))} |",
        f"| PyAV | {cell(env.get('av', '?'))}{' (hidden: ' + NO_AV_ENV + '=1)' if os.environ.get(NO_AV_ENV) else ''} |",
        f"| python | {cell(env.get('python', '?'))} |",
    ]
    if "tf32" in env:
        lines.append(f"| TF32 | {cell(env['tf32'])} |")
    lines += [
        f"| git commit | {cell(commit)} |",
        f"| command | `{cell(shlex.join(['python', 'benchmarks/gpu_suite.py', *argv]))}` |",
        f"| mode | {'quick' if args.quick else 'full'} |",
        f"| time | {used:.0f} s of a {args.budget_s:.0f} s budget (+{args.grace_s:.0f} s grace) |",
        "",
        "| section | title | status | time s | note | table |",
        "|---|---|---|---:|---|---|",
    ]
    for key, r in sorted(results.items()):
        sec = SECTIONS[key]
        lines.append(
            f"| {key} | {cell(sec.title)} | {r['status']} | {r.get('seconds', 0):.1f} | {cell(r['note'])} | "
            f"[{sec.filename}]({sec.filename}) |"
        )
    (args.out / "summary.md").write_text("\n".join(lines) + "\n")


def git_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(ROOT), "describe", "--always", "--dirty", "--abbrev=12"],
                             capture_output=True, text=True, timeout=10)  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return "unknown (no git)"
    return out.stdout.strip() or "unknown (not a git checkout)"


def parse_sections(text: str) -> list[str]:
    keys = [k.strip().lower() for k in re.split(r"[,\s]+", text) if k.strip()]
    bad = [k for k in keys if k not in SECTIONS]
    if bad or not keys:
        raise argparse.ArgumentTypeError(f"unknown section(s) {', '.join(bad) or text!r}; known: {', '.join(SECTIONS)}")
    return sorted(dict.fromkeys(keys))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    ap.add_argument("--out", type=Path, help="folder for summary.md and the tables (created)")
    ap.add_argument("--quick", action="store_true", help="tiny configs and sizes (the CPU mode CI runs)")
    ap.add_argument("--sections", type=parse_sections, default=list(SECTIONS), help="e.g. a,c,f (default: all)")
    ap.add_argument("--budget-s", type=float, default=420.0, help="no section starts after this (default 420)")
    ap.add_argument("--grace-s", type=float, default=60.0, help="a section running past budget + grace is stopped")
    ap.add_argument("--commit", help="the commit to record (default: git describe, where git and .git are there)")
    ap.add_argument("--list", action="store_true", help="list the sections and exit")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--deadline", type=float, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.out is not None:
        args.out = args.out.resolve()  # the sections run with the repository as their working directory
    if args.list:
        for s in SECTIONS.values():
            print(f"{s.key}  {s.filename:22} {s.title}")
        return 0
    if args.out is None:
        ap.error("--out DIR is required")
    if args.child:
        return run_child(args)
    args.out.mkdir(parents=True, exist_ok=True)
    signal.signal(signal.SIGTERM, _stop_children)
    signal.signal(signal.SIGINT, _stop_children)
    started = time.time()
    deadline = started + args.budget_s
    env_child = start_child("env", args, deadline)  # beside the first section: it only reads versions
    env: dict | None = None
    results: dict[str, dict] = {}
    for key in sorted(args.sections, key=RUN_ORDER.index):
        sec = SECTIONS[key]
        path = args.out / sec.filename
        path.unlink(missing_ok=True)
        t0 = time.time()
        if time.time() >= deadline:
            result, output = {"status": "skip", "note": "skipped: time budget"}, ""
        elif sec.gate():
            result, output = {"status": "skip", "note": sec.gate()}, ""
        else:
            print(f"== {key}: {sec.title}", flush=True)
            child = start_child(key, args, deadline)
            try:
                result, output = finish_child(child, deadline + args.grace_s - time.time())
            except SystemExit as stop:  # SIGTERM/SIGINT: the summary still says how far the run got
                results[key] = {"status": "fail", "note": f"stopped by a signal (exit {stop.code})", "seconds": 0.0}
                write_summary(args, env or {}, started, results, argv)
                raise
        result["seconds"] = time.time() - t0
        if env is None:
            env, _ = finish_child(env_child, 120)
            if "torch" not in env:
                env = {"device": f"unknown ({env.get('note', '')})"}
        results[key] = result
        _finish_table(path, f"{key}. {sec.title}", result, output)
        write_summary(args, env, started, results, argv)
        print(f"== {key}: {result['status']} in {result['seconds']:.1f} s: {result['note']}", flush=True)
    failed = [k for k, r in results.items() if r["status"] == "fail"]
    print(f"summary: {args.out / 'summary.md'}; failed: {', '.join(failed) or 'none'}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
