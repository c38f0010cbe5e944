"""The model of a recipe: building it, initial weights (SpyNet, a pretrained network), export."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from rvrt.checkpoint import load_into, load_state_dict_file, save_safetensors
from rvrt.errors import InputError, WeightsError

__all__ = ["build_model", "init_weights", "export_weights", "matches"]

log = logging.getLogger(__name__)


def matches(name: str, prefixes: list[str] | tuple[str, ...]) -> str | None:
    """The first of ``prefixes`` that is ``name`` or a dotted parent of it (``spynet`` for
    ``spynet.basic_module.0...``), else None."""
    for p in prefixes:
        if name == p or name.startswith(p + "."):
            return p
    return None


def build_model(model_cfg: dict[str, Any]) -> tuple[nn.Module, str, dict[str, Any]]:
    """``(module, arch, kwargs)`` from a recipe ``[model]`` table (random initialisation)."""
    from rvrt import zoo

    if model_cfg["name"]:
        spec = zoo.get_spec(model_cfg["name"])
        arch, kwargs = spec.arch, {**spec.kwargs, **model_cfg["kwargs"]}
    else:
        arch, kwargs = model_cfg["arch"], dict(model_cfg["kwargs"])
        if arch not in zoo.ARCHITECTURES:
            raise InputError(f"unknown architecture {arch!r}; known: {', '.join(zoo.ARCHITECTURES)}")
    family = zoo.ARCHITECTURES[arch]
    try:
        config = family.config_class.from_kwargs(**kwargs)
    except (TypeError, ValueError) as err:
        raise InputError(f"model: {err}") from err
    return family.model_class(config), arch, kwargs


def _fetch(ref: str) -> Path:
    if ref.startswith(("https://", "http://")):
        from rvrt.hub import download, sha256_file, weights_path

        path = download(ref, weights_path(ref.rsplit("/", 1)[-1]))
        m = re.search(r"-([0-9a-f]{8,})\.[a-z]+$", path.name)  # BasicSR names carry a sha256 prefix
        if m and not sha256_file(path).startswith(m.group(1)):
            raise WeightsError(f"{path} does not match the sha256 prefix {m.group(1)} in its name")
        return path
    return Path(ref)


def init_weights(module: nn.Module, model_cfg: dict[str, Any]) -> None:
    """Load ``model.spynet`` into the SpyNet, then ``model.init`` into the whole network
    (strictly, or whatever fits when ``init_strict`` is false)."""
    if model_cfg["spynet"] == "zero-flow" and hasattr(module, "spynet"):
        # no pretrained SpyNet at hand: start from zero flows (alignment then learns from the
        # restoration loss alone) by zeroing the last convolution of every pyramid level
        with torch.no_grad():
            for level in module.spynet.basic_module:
                level.basic_module[-1].weight.zero_()
                level.basic_module[-1].bias.zero_()
        log.info("SpyNet starts from zero flows (last layer of each level zeroed)")
    elif model_cfg["spynet"] and hasattr(module, "spynet"):
        path = _fetch(model_cfg["spynet"])
        sd = load_state_dict_file(path)
        missing, unexpected = module.spynet.load_state_dict(sd, strict=False)
        if unexpected or [k for k in missing if k not in ("mean", "std")]:
            raise WeightsError(
                f"{path} is not a SpyNet state dict (missing {missing[:4]}, unexpected {unexpected[:4]})"
            )
        log.info("SpyNet initialised from %s", path)
    init = model_cfg["init"]
    if not init:
        return
    if init == "official" or init.startswith(("official:", "zoo:")):
        from rvrt.api import fetch_weights

        path = fetch_weights(init.partition(":")[2] or model_cfg["name"])
    else:
        path = Path(init)
    sd = load_state_dict_file(path)
    if model_cfg["init_strict"]:
        load_into(module, sd, source=f"init weights {path}")
    else:
        own = module.state_dict()
        fit = {k: v for k, v in sd.items() if k in own and own[k].shape == v.shape}
        module.load_state_dict(fit, strict=False)
        skipped = sorted(set(sd) - set(fit)) + sorted(set(own) - set(fit))
        log.info("initialised %d tensors from %s; %d left as they were: %s", len(fit), path, len(skipped), skipped[:8])


def export_weights(
    module: nn.Module, path: str | Path, *, arch: str, kwargs: dict[str, Any], name: str, step: int
) -> Path:
    """Model weights as ``.safetensors`` whose metadata lets :func:`rvrt.load_model` rebuild the
    network (training-only options such as activation checkpointing are left out)."""
    config = {k: v for k, v in kwargs.items() if not k.startswith(("use_checkpoint", "no_checkpoint"))}
    return save_safetensors(module, path, arch=arch, config=config, name=name, metadata={"rvrt.train.step": str(step)})
