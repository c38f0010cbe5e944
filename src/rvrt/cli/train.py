"""``rvrt train``: train from a recipe, in one process or under ``torchrun``.

    rvrt train tiny_cpu --out runs/tiny
    rvrt train 001_RVRT_videosr_bi_REDS_30frames --set data.train.gt_root=/data/REDS/train_sharp --dry-run
    torchrun --nproc-per-node 8 -m rvrt train rvrt.sr_bi_reds --out runs/001 --resume auto

Exit status: 0 when the iterations are done (or ``--until`` was reached), 130 when SIGINT or
SIGTERM stopped the run early after writing a checkpoint (continue with ``--resume auto``),
2 for a bad recipe, bad data or a bad option.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

EPILOG = """exit status: 0 done (or --until reached); 130 stopped by SIGINT/SIGTERM after saving a checkpoint
(continue with --resume auto); 2 bad recipe, data or option.
multi-GPU: torchrun --nproc-per-node N -m rvrt train RECIPE ... (data.batch_size is the total over processes)."""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model from a recipe (one process, or DDP under torchrun)",
        description="Train a model from a recipe: a shipped recipe name/alias (see --list) or a .toml file.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("recipe", nargs="?", help="recipe name, alias or .toml path")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a recipe entry, e.g. --set optim.lr=2e-4 (repeatable; VALUE is TOML)",
    )
    p.add_argument("--dry-run", action="store_true", help="print the resolved recipe and check the model builds")
    p.add_argument("--format", choices=("toml", "json"), default="toml", help="--dry-run output format")
    p.add_argument(
        "--resume",
        metavar="auto|PATH",
        help="continue from the latest checkpoint in --out (auto) or from a checkpoint file",
    )
    p.add_argument("--out", metavar="DIR", help="run folder (default: runs/<recipe name>)")
    p.add_argument("--until", type=int, metavar="STEP", help="stop with a checkpoint after this iteration")
    p.add_argument("--list", action="store_true", help="list the shipped recipes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only: no progress bar")
    p.set_defaults(run=run)


def _list() -> int:
    from rvrt.train.config import list_recipes

    for r in list_recipes():
        aliases = ", ".join(r["aliases"])
        print(f"{r['file']:42s} {aliases:28s} {r['description']}")
    return 0


def run(args: argparse.Namespace) -> int:
    from rvrt.errors import InputError
    from rvrt.train.config import dumps_json, dumps_toml, load_recipe

    if args.list:
        return _list()
    if not args.recipe:
        raise InputError("name a recipe (see rvrt train --list) or give a .toml file")
    recipe = load_recipe(args.recipe, args.overrides)
    if args.dry_run:
        import torch

        from rvrt.train.model import build_model

        with torch.device("meta"):
            module, arch, _ = build_model(recipe["model"])
        n = sum(p.numel() for p in module.parameters())
        sys.stdout.write(dumps_json(recipe) if args.format == "json" else dumps_toml(recipe))
        print(f"# model: {arch}, {n:,} parameters", file=sys.stderr)
        return 0

    from rvrt.train.trainer import Trainer

    out = Path(args.out) if args.out else Path("runs") / recipe["name"]
    if args.until is not None and args.until < 1:
        raise InputError("--until must be >= 1")
    progress = not (args.no_progress or args.quiet)
    result = Trainer(recipe, out, resume=args.resume, until=args.until, progress=progress).fit()
    if int(os.environ.get("RANK", "0")) == 0:
        msg = {"finished": "finished", "paused": "paused", "interrupted": "interrupted"}[result.status]
        print(
            f"rvrt train: {msg} at iteration {result.step}/{result.iterations}; run folder {result.out_dir}",
            file=sys.stderr,
        )
        if result.best:
            print(
                f"rvrt train: best validation PSNR {result.best['psnr']:.3f} dB at iteration {result.best['step']}",
                file=sys.stderr,
            )
        if result.weights is not None:
            print(f"rvrt train: weights {result.weights}", file=sys.stderr)
        elif result.checkpoint is not None:
            print(f"rvrt train: continue with --resume auto (checkpoint {result.checkpoint})", file=sys.stderr)
    return 130 if result.status == "interrupted" else 0
