"""``rvrt weights``: list the model zoo, download published weights, convert weight files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rvrt import zoo
from rvrt.cli.options import add_quiet, dtype_arg
from rvrt.errors import InputError


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("weights", help="list, download and convert model weights")
    wsub = p.add_subparsers(dest="weights_command", metavar="ACTION", required=True)

    ls = wsub.add_parser("list", help="list registered models and their published weights")
    ls.add_argument("--arch", help="only this architecture (e.g. rvrt, vrt, rvrt_light)")
    add_quiet(ls)
    ls.set_defaults(run=_list)

    dl = wsub.add_parser("download", help="download the published weights of a model into the cache")
    dl.add_argument("model", nargs="+", help="registered name or alias, or 'all'")
    add_quiet(dl)
    dl.set_defaults(run=_download)

    cv = wsub.add_parser("convert", help="convert a weights file (.pth, .ckpt, .safetensors) to .safetensors")
    cv.add_argument("input", type=Path)
    cv.add_argument("output", type=Path)
    cv.add_argument("-m", "--model", help="model name or config file (default: recognised from the file)")
    cv.add_argument(
        "--dtype",
        type=dtype_arg,
        default=None,
        metavar="{fp32,fp16,bf16}",
        help="store the parameters in this dtype (fp16 halves the file; models load them into "
        "float32). Default: as in INPUT",
    )
    cv.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")
    add_quiet(cv)
    cv.set_defaults(run=_convert)


def _list(args: argparse.Namespace) -> int:
    names = zoo.list_models(args.arch)
    rows = [("name", "official task name", "task", "scale", "weights licence")]
    for n in names:
        s = zoo.get_spec(n)
        rows.append(
            (n, s.aliases[0] if s.aliases else "-", s.task, f"x{s.scale}", s.weights.license if s.weights else "-")
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    return 0


def _download(args: argparse.Namespace) -> int:
    from rvrt.api import fetch_weights

    names = zoo.list_models() if args.model == ["all"] else args.model
    for n in names:
        spec = zoo.get_spec(n)
        if spec.weights is None:
            print(f"{spec.name}: no published weights", file=sys.stderr)
            continue
        print(f"{spec.name}: {fetch_weights(spec, progress=not args.quiet)}")
    return 0


def _convert(args: argparse.Namespace) -> int:
    from rvrt.api import load_model
    from rvrt.checkpoint import save_safetensors

    if args.output.suffix != ".safetensors":
        raise InputError(f"OUTPUT must end in .safetensors; got {args.output}")
    if args.output.exists() and not args.overwrite:
        raise InputError(f"{args.output} exists; pass --overwrite to replace it")
    model = load_model(args.input, model=args.model)
    spec = model.rvrt_spec
    if args.dtype is not None:
        from rvrt.compute import resolve_dtype

        model.to(resolve_dtype(args.dtype))
    save_safetensors(
        model,
        args.output,
        arch=spec.arch,
        config=spec.build_config().to_kwargs(),
        name=spec.name,
        metadata={"rvrt.source": args.input.name},
    )
    print(f"wrote {args.output} ({spec.name}, {spec.arch})")
    return 0
