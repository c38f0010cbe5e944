"""``rvrt ui``: serve the local web page (see :mod:`rvrt.ui`)."""

from __future__ import annotations

import argparse
import sys

DEFAULT_PORT = 7870

EPILOG = """The page restores with the same runner as `rvrt restore`. Files go to a temporary folder, removed when
the server stops (download the result first). There is no login: keep the default --host 127.0.0.1 unless
everyone who can reach this machine may use it.
examples:
  rvrt ui                      # then open http://127.0.0.1:7870/
  rvrt ui --port 0 --open      # any free port, opened in the default browser"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "ui",
        help="a web page on this computer: drop a video, preview one frame, restore, download",
        description="Serve a local web page to restore videos: drop a video or frames, choose a model, compare one "
        "restored frame with the input, run the whole video with progress and download the result.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this computer only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    p.add_argument(
        "--max-upload-mb", type=float, default=4096, help="largest upload: a video, a zip, or frames in all (4096)"
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N, ... (as rvrt restore --device)")
    p.add_argument("--open", action="store_true", help="open the page in the default browser")
    p.set_defaults(run=run, handles_signals=True)


def run(args: argparse.Namespace) -> int:
    from rvrt.errors import InputError
    from rvrt.ui import UIApp, make_server
    from rvrt.ui.server import is_loopback

    if not 0 <= args.port <= 65535:
        raise InputError(f"--port must be 0..65535; got {args.port}")
    if not args.max_upload_mb > 0:
        raise InputError(f"--max-upload-mb must be above 0; got {args.max_upload_mb}")
    app = UIApp(max_upload_bytes=int(args.max_upload_mb * 2**20), device=args.device)
    try:
        try:
            server = make_server(args.host, args.port, app)
        except OSError as err:
            raise InputError(
                f"cannot listen on {args.host}:{args.port}: {err.strerror or err}; "
                "choose another --port (0: any free port)"
            ) from None
        try:  # from here on, Ctrl-C and SIGTERM are the way to stop
            if not is_loopback(args.host):
                print(
                    f"rvrt ui: warning: --host {args.host} is not a loopback address: anyone who can reach this "
                    f"machine on port {server.port} can upload files and run jobs (there is no login)",
                    file=sys.stderr,
                )
            print(f"rvrt ui: serving {server.url} (Ctrl-C stops; files are removed then)", flush=True)
            if args.open:
                import webbrowser

                webbrowser.open(server.url)
            server.serve_forever(poll_interval=0.2)
        except KeyboardInterrupt:
            print("rvrt ui: stopped", file=sys.stderr)
        finally:
            server.server_close()
    finally:
        app.close()
    return 0
