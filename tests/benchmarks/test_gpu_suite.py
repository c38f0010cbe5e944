"""benchmarks/gpu_suite.py in its CPU mode (``--device cpu --quick``): the suite that runs on a GPU machine
when one is lent must be known to run before then.

One run of every section with PyAV hidden (as on the GPU machines) and a stand-in official checkout
(rvrt's own RVRT under the official file name: section g's patch, import, weight copy and timing run on
the CPU), whose tables are read back value by value; then a run with two broken sections (an exception
and a crash) whose neighbour still completes, and a run that hits the time budget.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
SUITE = ROOT / "benchmarks" / "gpu_suite.py"

_spec = importlib.util.spec_from_file_location("gpu_suite", SUITE)
gpu_suite = sys.modules["gpu_suite"] = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gpu_suite)

OFFICIAL_STAND_IN = '''"""Stand-in for the official models/network_rvrt.py: rvrt's RVRT under the official name."""
from distutils.version import LooseVersion  # noqa: F401  (the suite patches this line, as in the official file)

from rvrt.models import RVRT as _RVRT


class RVRT(_RVRT):
    pass
'''


def run_suite(out: Path, *args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, str(SUITE), "--device", "cpu", "--quick", "--out", str(out), *args]
    full = {k: v for k, v in os.environ.items() if not k.startswith(("RVRT_GPU_SUITE_", "RVRT_OFFICIAL_DIR"))}
    full["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), os.environ.get("PYTHONPATH", "")])
    full.update(env or {})
    return subprocess.run(cmd, cwd=ROOT, env=full, capture_output=True, text=True, timeout=timeout)


def tables(path: Path) -> list[list[dict[str, str]]]:
    """The markdown tables of a file, each a list of {column: cell}."""
    found, lines = [], path.read_text().splitlines()
    i = 0
    while i < len(lines) - 1:
        if lines[i].startswith("| ") and re.fullmatch(r"\|(-+:?\|)+", lines[i + 1]):
            cols = [c.strip() for c in lines[i].strip("|").split(" | ")]
            rows, i = [], i + 2
            while i < len(lines) and lines[i].startswith("| "):
                cells = [c.strip() for c in re.split(r"(?<!\\)\|", lines[i].strip()[1:-1])]
                assert len(cells) == len(cols), (path.name, lines[i])
                rows.append(dict(zip(cols, cells)))
                i += 1
            found.append(rows)
        i += 1
    return found


def table(path: Path) -> list[dict[str, str]]:
    return tables(path)[0]


def row(rows: list[dict[str, str]], **match: str) -> dict[str, str]:
    hits = [r for r in rows if all(r[k] == v for k, v in match.items())]
    assert len(hits) == 1, (match, rows)
    return hits[0]


def sections(out: Path) -> dict[str, dict[str, str]]:
    return {r["section"]: r for r in tables(out / "summary.md")[1]}


@pytest.fixture(scope="module")
def quick(tmp_path_factory) -> tuple[subprocess.CompletedProcess, Path]:
    tmp = tmp_path_factory.mktemp("gpu_suite")
    official = tmp / "RVRT"
    (official / "models").mkdir(parents=True)
    (official / "models" / "network_rvrt.py").write_text(OFFICIAL_STAND_IN)
    out = tmp / "out"
    proc = run_suite(out, env={"RVRT_GPU_SUITE_NO_AV": "1", "RVRT_OFFICIAL_DIR": str(official)})
    return proc, out


def test_quick_run_passes_every_section_and_writes_the_summary(quick) -> None:
    proc, out = quick
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    text = (out / "summary.md").read_text()  # its first table: two unnamed columns, read line by line
    info = dict(re.findall(r"^\| (\w[\w ]*) \| (.+) \|$", text, re.M))
    assert info["device"].startswith("CPU: ")
    assert info["torch"] == torch.__version__
    assert info["PyAV"].startswith("not installed (hidden")
    assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d UTC", info["date"])
    assert "--device cpu --quick --out" in info["command"] and info["git commit"]
    assert info["mode"] == "quick"
    secs = sections(out)
    assert list(secs) == list("abcdefg")
    for key, r in secs.items():
        assert r["status"] == "pass", (key, r)
        assert float(r["time s"]) > 0
        assert (out / gpu_suite.SECTIONS[key].filename).is_file()


def test_triton_tests_table(quick) -> None:
    _, out = quick
    rows = table(out / "a_triton_tests.md")
    assert row(rows, test="tests/ops/test_gda_triton.py::test_non_contiguous_inputs[cpu]")["outcome"] == "passed"
    assert row(rows, test="tests/ops/test_gda_triton.py::test_float64_is_refused_with_a_reason")["outcome"] == "passed"
    text = (out / "a_triton_tests.md").read_text()
    assert "2 passed, 0 failed, 0 errors, 0 skipped" in text and "stand-in `av` module" in text
    assert sections(out)["a"]["note"] == "2 passed, 0 failed, 0 errors, 0 skipped"


def test_model_agreement_table(quick) -> None:
    _, out = quick
    rows = table(out / "b_model_agreement.md")
    assert list(rows[0]) == ["gda", "dtype", "s", "max abs vs fp32 reference", "rel L2 vs fp32 reference", "check",
                             "note"]  # fmt: skip
    ref = row(rows, gda="reference", dtype="fp32")
    assert float(ref["max abs vs fp32 reference"]) == 0 and float(ref["s"]) > 0
    half = row(rows, gda="reference", dtype="bf16")
    assert 0 < float(half["rel L2 vs fp32 reference"]) < 0.05
    assert 0 < float(half["max abs vs fp32 reference"]) < 0.1
    for dtype in ("fp32", "bf16"):
        assert row(rows, gda="triton", dtype=dtype)["s"] == "skipped: needs CUDA"


def test_gda_table(quick) -> None:
    _, out = quick
    rows = table(out / "c_gda.md")
    assert list(rows[0])[:6] == ["impl", "dtype", "fwd ms", "fwd peak MiB", "fwd+bwd ms", "fwd+bwd peak MiB"]
    im2col, ref = row(rows, impl="im2col"), row(rows, impl="reference")
    for r in (im2col, ref):
        assert float(r["fwd ms"]) > 0 and float(r["fwd+bwd ms"]) > 0
        assert float(r["max abs err out"]) < 1e-4 and float(r["max rel err grads"]) < 1e-4
    assert im2col["fwd speed-up vs im2col"] == "1.00"
    want = float(im2col["fwd+bwd ms"]) / float(ref["fwd+bwd ms"])
    assert float(ref["fwd+bwd speed-up vs im2col"]) == pytest.approx(want, rel=0.02, abs=0.01)
    assert row(rows, impl="triton")["fwd ms"] == "skipped: needs CUDA"


def test_models_table(quick) -> None:
    _, out = quick
    rows = table(out / "d_models.md")
    assert list(rows[0]) == ["model", "frames", "dtype", "compile", "first call s", "s per clip", "frames/s",
                             "peak MiB", "max abs diff vs fp32 eager", "note"]  # fmt: skip
    fp32 = row(rows, model="rvrt.sr_bi_reds-tiny", dtype="fp32")
    assert float(fp32["frames/s"]) == pytest.approx(2 / float(fp32["s per clip"]), rel=0.02)
    assert float(fp32["max abs diff vs fp32 eager"]) == 0 and float(fp32["peak MiB"]) > 0
    half = row(rows, model="rvrt.sr_small-tiny", dtype="bf16")
    assert float(half["frames/s"]) > 0 and half["compile"] == "no"
    assert "compile rows: not in --quick" in (out / "d_models.md").read_text()


def test_memory_model_table(quick) -> None:
    _, out = quick
    (r,) = table(out / "e_memory_model.md")
    measured, predicted = float(r["measured MiB"]), float(r["predicted MiB"])
    assert measured > 0 and predicted > 0 and r["T x H x W"] == "2x16x16"
    assert float(r["predicted / measured"]) == pytest.approx(predicted / measured, abs=0.02)
    assert r["check"] == ("UNDER" if predicted < measured else "ok")


def test_tile_auto_table(quick) -> None:
    _, out = quick
    (r,) = table(out / "f_tile_auto.md")
    assert r["tile picked"].startswith("0 0 0 (overlap 2 20 20; auto")  # a small clip: whole frames
    assert r["frames out"] == "2" and float(r["frames/s"]) > 0 and float(r["predicted GiB"]) > 0
    assert "restore_frames" in sections(out)["f"]["note"]  # PyAV hidden: the planner and the engine


def test_official_table_runs_the_same_weights(quick) -> None:
    _, out = quick
    rows = table(out / "g_official.md")
    official, ours = row(rows, impl="official"), row(rows, impl="rvrt", dtype="fp32")
    assert official["speed vs official fp32"] == "1.00x"
    assert float(ours["max abs diff vs official fp32"]) == 0  # the weights were copied into the official model
    ratio = float(official["s per clip"]) / float(ours["s per clip"])
    assert float(ours["speed vs official fp32"].rstrip("x")) == pytest.approx(ratio, rel=0.05, abs=0.01)
    assert float(row(rows, impl="rvrt", dtype="bf16")["max abs diff vs official fp32"]) > 0
    assert "patched models/network_rvrt.py" in (out / "g_official.md").read_text()


def test_broken_sections_fail_alone_and_the_exit_status_says_so(tmp_path) -> None:
    proc = run_suite(tmp_path, "--sections", "b,c,f", env={"RVRT_GPU_SUITE_FAULT": "b=raise,c=crash"})
    assert proc.returncode == 1, proc.stdout[-3000:]
    secs = sections(tmp_path)
    assert secs["b"]["status"] == "fail" and "RuntimeError: fault injected" in secs["b"]["note"]
    assert secs["c"]["status"] == "fail" and "without a result" in secs["c"]["note"]  # the process died
    assert "End of its output" in (tmp_path / "b_model_agreement.md").read_text()
    assert secs["f"]["status"] == "pass", secs["f"]
    assert "rvrt.restore_iter" in secs["f"]["note"]  # PyAV there: the public API
    assert table(tmp_path / "f_tile_auto.md")[0]["frames out"] == "2"


def test_time_budget_stops_a_section_and_skips_the_next(tmp_path) -> None:
    t0 = time.monotonic()
    proc = run_suite(
        tmp_path, "--sections", "c,e", "--budget-s", "2", "--grace-s", "1", env={"RVRT_GPU_SUITE_FAULT": "c=sleep:20"}
    )
    assert time.monotonic() - t0 < 18  # c was stopped, not waited for
    assert proc.returncode == 1
    secs = sections(tmp_path)
    assert secs["c"]["status"] == "fail" and secs["c"]["note"].startswith("stopped after")
    assert secs["e"]["status"] == "skip" and secs["e"]["note"] == "skipped: time budget"
    assert "skipped: time budget" in (tmp_path / "e_memory_model.md").read_text()


def test_rows_past_the_budget_are_skipped_and_row_errors_counted(tmp_path) -> None:
    ctx = gpu_suite.Ctx(device="cpu", quick=True, out=tmp_path, deadline=time.time() + 60)
    t = gpu_suite.Table(tmp_path / "t.md", "t", ["name", "value", "more"])
    assert ctx.attempt(t, ["ok"], lambda: [1.5, "x"])
    assert not ctx.attempt(t, ["bad"], lambda: [1 / 0])

    def skip():
        raise gpu_suite.Skip("not here")

    assert not ctx.attempt(t, ["skip"], skip)
    ctx.deadline = time.time() - 1
    called = []
    assert not ctx.attempt(t, ["late"], lambda: called.append(1) or [2])
    assert not called and ctx.errors == 1 and ctx.cut == 1
    rows = table(tmp_path / "t.md")
    assert [r["value"] for r in rows] == ["1.5", "error: ZeroDivisionError: division by zero", "skipped: not here",
                                          "skipped: time budget"]  # fmt: skip
    assert rows[0]["more"] == "x" and rows[1]["more"] == ""


def test_pytest_output_is_parsed() -> None:
    out = (
        "PASSED tests/ops/test_gda_triton.py::test_a[cuda]\n"
        "FAILED tests/ops/test_gda_triton.py::test_b[cpu] - AssertionError: 3e-2 > 1e-5\n"
        "SKIPPED [2] tests/ops/test_gda_triton.py:167: needs a CUDA GPU\n"
        "ERROR tests/ops/test_gda_triton_model.py::test_c - RuntimeError: CUDA error: an illegal memory access\n"
        "1 failed, 1 passed, 2 skipped, 1 error in 3.21s\n"
    )
    rows, counts = gpu_suite.parse_pytest(out)
    assert rows == [
        ("passed", "tests/ops/test_gda_triton.py::test_a[cuda]", ""),
        ("failed", "tests/ops/test_gda_triton.py::test_b[cpu]", "AssertionError: 3e-2 > 1e-5"),
        ("skipped", "tests/ops/test_gda_triton.py:167", "needs a CUDA GPU"),
        ("error", "tests/ops/test_gda_triton_model.py::test_c", "RuntimeError: CUDA error: an illegal memory access"),
    ]
    assert counts == {"passed": 1, "failed": 1, "errors": 1, "skipped": 2}


def test_sections_option_and_list() -> None:
    assert gpu_suite.parse_sections("f, a,c") == ["a", "c", "f"]
    with pytest.raises(argparse.ArgumentTypeError, match="unknown section"):
        gpu_suite.parse_sections("a,z")
    listed = subprocess.run([sys.executable, str(SUITE), "--list"], capture_output=True, text=True, timeout=60)
    assert [line.split()[0] for line in listed.stdout.splitlines()] == list("abcdefg")


def test_the_module_imports_neither_torch_nor_pyav() -> None:
    code = f"import runpy, sys; runpy.run_path({str(SUITE)!r}); print([m for m in ('torch', 'av') if m in sys.modules])"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.stdout.strip() == "[]", proc.stderr


def test_sigterm_ends_the_running_section_and_keeps_the_summary(tmp_path) -> None:
    """``timeout`` around the suite sends SIGTERM: the section's process (in a session of its own) must not
    outlive the suite, and the summary says where it stopped."""
    cmd = [sys.executable, str(SUITE), "--device", "cpu", "--quick", "--sections", "c", "--out", str(tmp_path)]
    env = dict(os.environ, RVRT_GPU_SUITE_FAULT="c=sleep:60")
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("== c:"):
            break
    time.sleep(1)
    proc.terminate()
    assert proc.wait(timeout=30) == 128 + 15
    proc.stdout.close()
    assert sections(tmp_path)["c"]["note"] == "stopped by a signal (exit 143)"
    time.sleep(0.5)
    left = [p for p in Path("/proc").glob("[0-9]*") if str(tmp_path) in _cmdline(p)]
    assert not left, [_cmdline(p) for p in left]


def _cmdline(proc_dir: Path) -> str:
    try:
        return (proc_dir / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
