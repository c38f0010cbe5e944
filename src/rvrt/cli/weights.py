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

    vf = wsub.add_parser(
        "verify",
        help="check weights files: digest (published or pinned at first download) and every key and shape",
    )
    vf.add_argument(
        "target", nargs="*", help="registered model names or weights files (default: every file present here)"
    )
    vf.set_defaults(run=_verify)

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


def _weights_here(spec: zoo.ModelSpec) -> str:
    """Whether the weights file is on this machine, and how it is checked before use."""
    from rvrt.hub import pin_path, weights_path

    w = spec.weights
    if w is None:
        return "-"
    if w.bundled:
        return "ships with rvrt"
    path = weights_path(w.filename)
    if not path.is_file():
        return "not downloaded"
    if w.sha256:
        return "cached (published sha256)"
    return "cached (sha256 pinned)" if pin_path(path).is_file() else "cached (not pinned yet)"


def _published(spec: zoo.ModelSpec) -> str:
    if not spec.metrics:
        return "-"
    m = spec.metrics[0]
    more = f" +{len(spec.metrics) - 1}" if len(spec.metrics) > 1 else ""
    return f"{m.dataset} {m.psnr:.2f}" + (f"/{m.ssim:.4f}" if m.ssim else "") + f" ({m.channel}){more}"


def _list(args: argparse.Namespace) -> int:
    names = zoo.list_models(args.arch)
    rows = [("name", "official task", "task", "params", "published PSNR/SSIM", "weights licence", "weights here")]
    for n in names:
        s = zoo.get_spec(n)
        rows.append(
            (
                n + (" (default)" if n == zoo.DEFAULT_MODEL else ""),
                s.aliases[0] if s.aliases else "-",
                f"{s.task} x{s.scale}",
                f"{s.params / 1e6:.1f} M" if s.params else "-",
                _published(s),
                s.weights.license if s.weights else "-",
                _weights_here(s),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
    if not args.quiet:
        print(
            "\nOfficial weights are downloaded on request (--weights official, `rvrt weights download NAME`); "
            "none publishes a sha256, so the digest of the first download is pinned and checked at every use "
            "(`rvrt weights verify`).",
            file=sys.stderr,
        )
    return 0


def _verify(args: argparse.Namespace) -> int:
    from rvrt.api import verify_weights
    from rvrt.errors import RVRTError

    targets = args.target or [
        n for n in zoo.list_models() if _weights_here(zoo.get_spec(n)) not in ("-", "not downloaded")
    ]
    failed = 0
    for t in targets:
        try:
            print(verify_weights(t))
        except RVRTError as err:
            print(f"rvrt: error: {err}", file=sys.stderr)
            failed += 1
    return 2 if failed else 0


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
