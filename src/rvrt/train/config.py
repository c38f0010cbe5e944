"""Training recipes: TOML files of plain data, merged over :data:`DEFAULTS`.

A recipe names a model (a registered name, with optional constructor overrides, or an
architecture with inline keyword arguments), the data, the loss, the optimiser, the learning
rate schedule and the training options. Recipes shipped with rvrt live in ``rvrt/recipes``
and are found by file name, by their ``name`` or by one of their ``aliases``
(``001_RVRT_videosr_bi_REDS_30frames``, ``rvrt.sr_bi_reds``, ``tiny_cpu``).

``--set a.b=c`` overrides one entry; ``c`` is read as a TOML value (``4e-4``, ``true``,
``[1, 2]``, ``"text"``) and taken as a bare string when it is not one.
"""

from __future__ import annotations

import copy
import json
import math
import os
import re
from importlib import resources
from pathlib import Path
from typing import Any

from rvrt.errors import InputError
from rvrt.files import loads_toml

__all__ = [
    "DEFAULTS",
    "FREE_TABLES",
    "list_recipes",
    "find_recipe",
    "load_recipe",
    "resolve_recipe",
    "apply_override",
    "dumps_toml",
    "loads_toml",
    "dumps_json",
]

#: Every recipe entry and its default. Tables listed in :data:`FREE_TABLES` take any keys.
DEFAULTS: dict[str, Any] = {
    "name": "",
    "aliases": [],
    "description": "",
    "seed": 0,
    "model": {
        "name": "",  # registered model: its architecture and config
        "arch": "rvrt",  # architecture of an inline model (when name is empty)
        "kwargs": {},  # constructor keyword arguments, over those of the registered model
        "spynet": "",  # SpyNet weights to start from: "", a file, an https URL, or "zero-flow"
        "init": "",  # weights to start from: "", a file, "official" or "official:<model>"
        # (the zoo's weights of <model>, bundled or downloaded; "zoo:<model>" says the same)
        "init_strict": True,  # every key of `init` must fit (else load what fits and log the rest)
    },
    "data": {
        "train": {},  # rvrt.data.datasets.build_dataset table
        "val": {},  # same; empty: no validation
        "batch_size": 8,  # clips per optimiser step, over all processes and accumulation steps
        "num_workers": 4,  # DataLoader workers per process
        "pin_memory": True,
        "persistent_workers": True,
        "prefetch_factor": 2,
    },
    "loss": {"type": "charbonnier", "eps": 1e-9, "weight": 1.0},
    "optim": {
        "type": "adam",
        "lr": 4e-4,
        "betas": [0.9, 0.99],
        "eps": 1e-8,
        "weight_decay": 0.0,
        "lr_mul": {},  # parameter-name prefix -> learning-rate multiplier, e.g. {spynet = 0.25}
        "grad_clip": 0.0,  # max global gradient norm; 0: no clipping
    },
    "schedule": {
        "type": "cosine_restarts",  # or "constant"
        "periods": [600000],  # iterations of each cosine cycle
        "restart_weights": [1.0],  # peak of each cycle, relative to lr
        "eta_min": 1e-7,
        "warmup": 0,  # linear warm-up iterations
    },
    "train": {
        "iterations": 600000,
        "freeze": ["spynet"],  # parameter-name prefixes frozen during the first iterations
        "freeze_iters": 0,  # frozen while iteration < freeze_iters (1-based, as KAIR's fix_iter)
        "accum_steps": 1,  # micro-batches per optimiser step
        "amp": "none",  # "none", "bf16" or "fp16" (fp16 uses a gradient scaler)
        "device": "auto",  # "auto", "cpu", "cuda"
        "threads": 0,  # torch CPU threads per process; 0: torch's default
        "find_unused_parameters": False,
        "log_every": 100,
        "save_every": 5000,
        "val_every": 5000,
        "val_tile": [0, 0],  # validation tile (LQ pixels, 0: whole frames), blended over val_tile_overlap
        "val_tile_overlap": [20, 20],
        "keep_last": 3,
        "tensorboard": True,
    },
}

#: tables whose keys are not fixed by DEFAULTS
FREE_TABLES = ("model.kwargs", "data.train", "data.val", "optim.lr_mul")

_RECIPES_PACKAGE = "rvrt.recipes"


# --------------------------------------------------------------------------- TOML
_BARE_KEY = re.compile(r"^[A-Za-z0-9_-]+$")


def _key(k: str) -> str:
    return k if _BARE_KEY.match(k) else json.dumps(k)


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v, ensure_ascii=False)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{_key(k)} = {_value(x)}" for k, x in v.items()) + "}"
    raise InputError(f"cannot write {type(v).__name__} value {v!r} as TOML")


def dumps_toml(data: dict[str, Any]) -> str:
    """Write nested dicts of plain values as TOML (tables for non-empty dicts, inline tables
    for empty ones and for dicts inside lists). ``None`` values are left out."""
    lines: list[str] = []

    def table(d: dict[str, Any], path: list[str]) -> None:
        scalars = [(k, v) for k, v in d.items() if v is not None and not (isinstance(v, dict) and v)]
        subs = [(k, v) for k, v in d.items() if isinstance(v, dict) and v]
        if path and (scalars or not subs):
            lines.append("")
            lines.append("[" + ".".join(_key(p) for p in path) + "]")
        for k, v in scalars:
            lines.append(f"{_key(k)} = {_value(v)}")
        for k, v in subs:
            table(v, path + [k])

    table(data, [])
    return "\n".join(lines).lstrip("\n") + "\n"


def dumps_json(data: dict[str, Any]) -> str:
    return json.dumps(data, indent=2, sort_keys=False) + "\n"


# --------------------------------------------------------------------------- finding recipes
def _shipped() -> dict[str, str]:
    """File stem -> TOML text of every recipe shipped with rvrt."""
    out = {}
    for entry in resources.files(_RECIPES_PACKAGE).iterdir():
        if entry.name.endswith(".toml"):
            out[entry.name[: -len(".toml")]] = entry.read_text()
    return dict(sorted(out.items()))


def list_recipes() -> list[dict[str, Any]]:
    """``{"file", "name", "aliases", "description"}`` of every shipped recipe."""
    out = []
    for stem, text in _shipped().items():
        data = loads_toml(text, f"recipe {stem}")
        out.append(
            {
                "file": stem,
                "name": data.get("name", stem),
                "aliases": data.get("aliases", []),
                "description": data.get("description", ""),
            }
        )
    return out


def find_recipe(ref: str | os.PathLike) -> tuple[str, str]:
    """``(text, where)`` of a recipe given as a path, a shipped file name, a name or an alias."""
    text = os.fspath(ref)
    path = Path(text)
    if path.suffix in (".toml", ".json") or os.sep in text or path.is_file():
        if not path.is_file():
            raise InputError(f"recipe file not found: {path}")
        return path.read_text(), str(path)
    shipped = _shipped()
    if text in shipped:
        return shipped[text], f"recipe {text}"
    for stem, body in shipped.items():
        data = loads_toml(body, f"recipe {stem}")
        if text == data.get("name") or text in data.get("aliases", []):
            return body, f"recipe {stem}"
    known = []
    for r in list_recipes():
        known += [r["file"], *r["aliases"]]
    raise InputError(f"unknown recipe {text!r}; give a .toml file or one of: {', '.join(known)}")


# --------------------------------------------------------------------------- merging / checking
def _is_free(path: str) -> bool:
    return any(path == f or path.startswith(f + ".") for f in FREE_TABLES)


def _merge(base: dict[str, Any], over: dict[str, Any], path: str, where: str) -> dict[str, Any]:
    """``over`` merged into a copy of ``base``; keys outside free tables must exist in ``base``."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        key = f"{path}.{k}" if path else k
        if _is_free(key):
            if isinstance(v, dict) and isinstance(out.get(k), dict):
                out[k] = _merge(out[k], v, key, where)
            else:
                out[k] = copy.deepcopy(v)
        elif k not in base:
            raise InputError(f"{where}: unknown entry {key!r}")
        elif isinstance(base[k], dict):
            if not isinstance(v, dict):
                raise InputError(f"{where}: {key} must be a table")
            out[k] = _merge(base[k], v, key, where)
        else:
            out[k] = _coerce(base[k], v, key, where)
    return out


def _coerce(default: Any, v: Any, key: str, where: str) -> Any:
    if isinstance(default, bool):
        if not isinstance(v, bool):
            raise InputError(f"{where}: {key} must be true or false; got {v!r}")
        return v
    if isinstance(default, float) and isinstance(v, int) and not isinstance(v, bool):
        return float(v)
    if isinstance(default, (int, float)) and not isinstance(default, bool):
        if not isinstance(v, type(default)) or isinstance(v, bool):
            raise InputError(f"{where}: {key} must be a {type(default).__name__}; got {v!r}")
        return v
    if isinstance(default, str) and not isinstance(v, str):
        raise InputError(f"{where}: {key} must be a string; got {v!r}")
    if isinstance(default, list) and not isinstance(v, list):
        raise InputError(f"{where}: {key} must be a list; got {v!r}")
    return copy.deepcopy(v)


def _parse_value(text: str) -> Any:
    try:
        return loads_toml(f"v = {text}", "value")["v"]
    except InputError:
        return text


def apply_override(recipe: dict[str, Any], assignment: str) -> dict[str, Any]:
    """Apply one ``a.b.c=value`` override (returns a new recipe). A table value replaces the
    table (``--set 'data.train={type="synthetic"}'``); a scalar replaces one entry."""
    key, sep, text = assignment.partition("=")
    key = key.strip()
    if not sep or not key:
        raise InputError(f"--set needs KEY=VALUE; got {assignment!r}")
    where = f"--set {key}"
    parts = key.split(".")
    value = _parse_value(text.strip())
    out = copy.deepcopy(recipe)
    node, default = out, DEFAULTS
    for i, p in enumerate(parts):
        path = ".".join(parts[: i + 1])
        last = i == len(parts) - 1
        free = _is_free(path)
        if not free and (not isinstance(default, dict) or p not in default):
            raise InputError(f"{where}: unknown entry {path!r}")
        if last:
            if free:
                node[p] = value
            elif isinstance(default[p], dict):
                if not isinstance(value, dict):
                    raise InputError(f"{where}: {path} is a table; give a TOML inline table")
                node[p] = _merge(default[p], value, path, where)
            else:
                node[p] = _coerce(default[p], value, path, where)
        else:
            if not isinstance(node.get(p), dict):
                if not free:
                    raise InputError(f"{where}: {path} is not a table")
                node[p] = {}
            node = node[p]
            default = default[p] if not free else {}
    return out


def resolve_recipe(
    data: dict[str, Any], overrides: list[str] | tuple[str, ...] = (), *, where: str = "recipe"
) -> dict[str, Any]:
    """Merge a parsed recipe over :data:`DEFAULTS`, apply overrides and check the values."""
    recipe = _merge(DEFAULTS, data, "", where)
    for ov in overrides:
        recipe = apply_override(recipe, ov)
    _check(recipe, where)
    return recipe


def load_recipe(ref: str | os.PathLike, overrides: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """Find, parse and resolve a recipe (see module docs). Raises :class:`InputError`."""
    text, where = find_recipe(ref)
    data = json.loads(text) if where.endswith(".json") else loads_toml(text, where)
    recipe = resolve_recipe(data, overrides, where=where)
    if not recipe["name"]:
        recipe["name"] = Path(os.fspath(ref)).stem
    return recipe


def _check(r: dict[str, Any], where: str) -> None:
    def need(cond: bool, msg: str) -> None:
        if not cond:
            raise InputError(f"{where}: {msg}")

    t, o, s, d = r["train"], r["optim"], r["schedule"], r["data"]
    need(bool(r["model"]["name"]) or bool(r["model"]["kwargs"]), "model needs a name or kwargs")
    need(t["iterations"] >= 1, "train.iterations must be >= 1")
    need(t["accum_steps"] >= 1, "train.accum_steps must be >= 1")
    need(t["amp"] in ("none", "bf16", "fp16"), f"train.amp must be none, bf16 or fp16; got {t['amp']!r}")
    need(
        t["device"] in ("auto", "cpu", "cuda") or t["device"].startswith("cuda:"),
        f"train.device must be auto, cpu or cuda; got {t['device']!r}",
    )
    for k in ("log_every", "save_every", "val_every", "keep_last"):
        need(t[k] >= 0, f"train.{k} must be >= 0")
    for k in ("val_tile", "val_tile_overlap"):
        need(len(t[k]) == 2 and all(isinstance(v, int) and v >= 0 for v in t[k]), f"train.{k} needs two ints >= 0")
    need(d["batch_size"] >= 1, "data.batch_size must be >= 1")
    need(d["num_workers"] >= 0, "data.num_workers must be >= 0")
    need(bool(d["train"].get("type")), "data.train needs a 'type' (see rvrt.data.datasets.DATASETS)")
    need(o["type"] in ("adam", "adamw"), f"optim.type must be adam or adamw; got {o['type']!r}")
    need(o["lr"] > 0, "optim.lr must be > 0")
    need(len(o["betas"]) == 2, "optim.betas needs two numbers")
    need(
        all(isinstance(v, (int, float)) and v >= 0 for v in o["lr_mul"].values()),
        "optim.lr_mul values must be numbers >= 0",
    )
    need(r["loss"]["type"] in ("charbonnier", "l1", "mse"), "loss.type must be charbonnier, l1 or mse")
    need(s["type"] in ("cosine_restarts", "constant"), "schedule.type must be cosine_restarts or constant")
    if s["type"] == "cosine_restarts":
        need(len(s["periods"]) >= 1 and all(p >= 1 for p in s["periods"]), "schedule.periods must be >= 1")
        need(len(s["restart_weights"]) == len(s["periods"]), "schedule.restart_weights needs one weight per period")
