"""Break the code on purpose and check that the tests notice: a mutation check of our own.

Each ``*.toml`` file next to this script lists deliberate breakages::

    [[mutation]]
    name = "tiling: last tile wins (hard seam)"
    file = "src/rvrt/inference/tiling.py"
    find = '''text that occurs exactly once in the file'''
    replace = '''the broken text'''
    tests = ["tests/inference/test_tiling.py"]  # the tests that must catch it

(or ``edits = [{file = ..., find = ..., replace = ...}, ...]`` for a breakage spanning several
places). For each one the runner copies the working tree to a scratch folder, applies the edits,
runs the listed tests there (``pytest -x``, the scratch ``src`` first on ``PYTHONPATH``) and records
whether they failed (caught) or passed (survived). The unbroken copy runs the same tests first, so
a test that fails anyway does not count as catching anything.

Usage::

    python tests/mutations/run.py                 # every mutation, table on stdout
    python tests/mutations/run.py -k tiling -k vrt   # those whose name contains "tiling" or "vrt"
    python tests/mutations/run.py --markdown docs/mutations.md

Exit status: 0 if every mutation was caught, 1 if any survived, 2 if the catalogue is wrong (a
``find`` text missing or ambiguous) or the unbroken tests fail.

Not part of the test suite (it runs the suite's tests dozens of times); run it after changing a
test or the code it guards. docs/TESTING.md has the latest table.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rvrt.files import loads_toml

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]


@dataclass(frozen=True)
class Edit:
    file: str
    find: str
    replace: str


@dataclass(frozen=True)
class Mutation:
    name: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    source: str  # the catalogue file


def load_catalogue(folder: Path = HERE) -> list[Mutation]:
    out = []
    for path in sorted(folder.glob("*.toml")):
        for entry in loads_toml(path.read_text(), str(path))["mutation"]:
            edits = entry.get("edits") or [dict(file=entry["file"], find=entry["find"], replace=entry["replace"])]
            out.append(
                Mutation(
                    name=entry["name"],
                    edits=tuple(Edit(e["file"], e["find"], e["replace"]) for e in edits),
                    tests=tuple(entry["tests"]),
                    source=path.name,
                )
            )
    names = [m.name for m in out]
    if len(set(names)) != len(names):
        raise SystemExit(f"duplicate mutation names in {folder}")
    return out


def check_catalogue(mutations: list[Mutation], root: Path = REPO) -> list[str]:
    """Problems that make a mutation meaningless: its text is not found exactly once, or it changes nothing."""
    problems = []
    for m in mutations:
        for e in m.edits:
            path = root / e.file
            if not path.is_file():
                problems.append(f"{m.name}: no file {e.file}")
                continue
            count = path.read_text().count(e.find)
            if count != 1:
                problems.append(f"{m.name}: the find text occurs {count} times in {e.file} (must be once)")
            if e.find == e.replace:
                problems.append(f"{m.name}: find and replace are the same")
        for t in m.tests:
            if not (root / t.split("::")[0]).exists():
                problems.append(f"{m.name}: no test file {t}")
    return problems


def copy_tree(dest: Path) -> None:
    """The files git knows of (tracked, and untracked but not ignored), as they are on disk."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=REPO, capture_output=True, check=True
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        src = REPO / name.decode()
        if src.is_file():
            (dest / name.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name.decode())


def run_tests(root: Path, tests: tuple[str, ...], timeout: float) -> tuple[bool, float, str]:
    """``(passed, seconds, last lines)`` of ``pytest -x`` on ``tests`` inside ``root``."""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(root / "src"), os.environ.get("PYTHONPATH", "")]))
    # the copy lives elsewhere, so point it at the real footage the working tree sees
    env.setdefault("RVRT_REAL_DATA", str(REPO.parent / "shared" / "data" / "real"))
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-p", "no:xdist", *tests]
    start = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, time.perf_counter() - start, "timed out (counted as caught)"
    tail = (proc.stdout + proc.stderr).strip().splitlines()[-3:]
    return proc.returncode == 0, time.perf_counter() - start, "\n".join(tail)


def apply(root: Path, m: Mutation, *, undo: bool = False) -> None:
    for e in m.edits:
        path = root / e.file
        old, new = (e.replace, e.find) if undo else (e.find, e.replace)
        path.write_text(path.read_text().replace(old, new, 1))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-k", action="append", help="only mutations whose name contains this text (repeatable: any)")
    ap.add_argument("--list", action="store_true", help="list the mutations and exit")
    ap.add_argument("--markdown", type=Path, help="also write the table as markdown to this file")
    ap.add_argument("--timeout", type=float, default=900, help="seconds per test run (default 900)")
    args = ap.parse_args(argv)

    mutations = [m for m in load_catalogue() if not args.k or any(k in m.name for k in args.k)]
    if not mutations:
        print(f"no mutation matches {args.k}", file=sys.stderr)
        return 2
    problems = check_catalogue(mutations)
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 2
    if args.list:
        for m in mutations:
            print(f"{m.name}  [{m.source}]  {' '.join(m.tests)}")
        return 0

    rows = []
    with tempfile.TemporaryDirectory(prefix="rvrt-mutations-") as tmp:
        root = Path(tmp)
        copy_tree(root)
        every = tuple(dict.fromkeys(t for m in mutations for t in m.tests))
        passed, seconds, tail = run_tests(root, every, args.timeout)
        print(f"unbroken: {len(every)} test targets {'pass' if passed else 'FAIL'} ({seconds:.0f} s)", flush=True)
        if not passed:
            print(tail, file=sys.stderr)
            return 2
        for m in mutations:
            apply(root, m)
            try:
                survived, seconds, tail = run_tests(root, m.tests, args.timeout)
            finally:
                apply(root, m, undo=True)
            verdict = "SURVIVED" if survived else "caught"
            rows.append((m, verdict, seconds))
            print(f"{verdict:8s} {seconds:6.1f} s  {m.name}", flush=True)

    survivors = [m.name for m, verdict, _ in rows if verdict == "SURVIVED"]
    caught = f"{len(rows) - len(survivors)} of {len(rows)} mutations caught"
    print(f"\n{caught}" + (f"; survived: {survivors}" if survivors else ""))
    if args.markdown:
        lines = ["| Breakage | Tests run | Result | Seconds |", "|---|---|---|---|"]
        for m, verdict, seconds in rows:
            tests = "<br>".join(f"`{t}`" for t in m.tests)
            lines.append(f"| {m.name} | {tests} | {verdict} | {seconds:.0f} |")
        args.markdown.write_text("\n".join(lines) + "\n")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())
