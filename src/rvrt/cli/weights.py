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
    _add_output_options(cv, "INPUT")
    add_quiet(cv)
    cv.set_defaults(run=_convert)

    av = wsub.add_parser(
        "average",
        help="average the parameters of weights files of one model (checkpoint averaging; a model "
        "between a model and its fine-tuned version)",
    )
    av.add_argument("input", type=Path, nargs="+", help="weights files of one model")
    av.add_argument("-o", "--output", type=Path, required=True, help="the averaged .safetensors")
    av.add_argument(
        "--shares",
        type=float,
        nargs="+",
        metavar="SHARE",
        help="how much of each INPUT, in their order, >= 0 and summing to 1 (default: equal shares)",
    )
    _add_output_options(av, "the first INPUT")
    av.set_defaults(run=_average)


def _add_output_options(p: argparse.ArgumentParser, source: str) -> None:
    """-m/--model, --dtype and --overwrite of the commands that write a weights file."""
    p.add_argument("-m", "--model", help="model name or config file (default: recognised from the file)")
    p.add_argument(
        "--dtype",
        type=dtype_arg,
        default=None,
        metavar="{fp32,fp16,bf16}",
        help="store the parameters in this dtype (fp16 halves the file; models load them into "
        f"float32). Default: as in {source}",
    )
    p.add_argument("--overwrite", action="store_true", help="replace OUTPUT if it exists")


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


def _check_output(path: Path, overwrite: bool) -> None:
    if path.suffix != ".safetensors":
        raise InputError(f"OUTPUT must end in .safetensors; got {path}")
    if path.exists() and not overwrite:
        raise InputError(f"{path} exists; pass --overwrite to replace it")


def _dtype(args: argparse.Namespace, path: Path, names: set[str]):
    """``--dtype``, or the dtype ``path`` stores the parameters ``names`` in (models load float16 files
    into float32, so the model's own dtype does not say)."""
    if args.dtype is not None:
        from rvrt.compute import resolve_dtype

        return resolve_dtype(args.dtype)
    import torch

    from rvrt.checkpoint import load_state_dict_file

    stored = load_state_dict_file(path)
    return next((v.dtype for k, v in stored.items() if k in names and v.is_floating_point()), torch.float32)


def _convert(args: argparse.Namespace) -> int:
    from rvrt.api import load_model
    from rvrt.checkpoint import save_safetensors

    _check_output(args.output, args.overwrite)
    model = load_model(args.input, model=args.model)
    spec = model.rvrt_spec
    model.to(_dtype(args, args.input, {k for k, _ in model.named_parameters()}))
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


def _average(args: argparse.Namespace) -> int:
    from rvrt.api import load_model
    from rvrt.checkpoint import average_state_dicts, save_safetensors

    _check_output(args.output, args.overwrite)
    shares = args.shares if args.shares is not None else [1 / len(args.input)] * len(args.input)
    if len(shares) != len(args.input):
        raise InputError(f"--shares has {len(shares)} values for {len(args.input)} input files; give one per file")
    if any(s < 0 for s in shares) or abs(sum(shares) - 1) > 1e-6:
        raise InputError(f"--shares must be >= 0 and sum to 1; got {' '.join(f'{s:g}' for s in shares)}")
    models = [load_model(path, model=args.model) for path in args.input]
    kinds = {(m.rvrt_spec.name, repr(m.config)) for m in models}
    if len(kinds) > 1:
        names = ", ".join(sorted({name for name, _ in kinds}))
        raise InputError(f"the input files belong to different models ({names}); average the files of one model")
    # the parameters only: buffers are tables the model rebuilds itself
    states = [{k: p.detach() for k, p in m.named_parameters()} for m in models]
    averaged = average_state_dicts(states, shares)
    dtype = _dtype(args, args.input[0], set(averaged))
    spec = models[0].rvrt_spec
    recipe = ", ".join(f"{s:g} x {p.name}" for s, p in zip(shares, args.input))
    save_safetensors(
        {k: v.to(dtype) for k, v in averaged.items()},
        args.output,
        arch=spec.arch,
        config=spec.build_config().to_kwargs(),
        name=spec.name,
        metadata={"rvrt.source": f"average of {recipe}"},
    )
    print(f"wrote {args.output} ({spec.name}: {recipe})")
    return 0
