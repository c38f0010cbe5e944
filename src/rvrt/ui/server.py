"""The HTTP side of ``rvrt ui``: the standard library's threading HTTP server, the page (one HTML
file shipped with the package) and a small JSON API over :class:`rvrt.ui.app.UIApp`.

API (every answer is JSON except the page, the preview images and the result; an error is
``{"error": "one line"}`` with a 4xx status)::

    GET  /                               the page
    GET  /api/models                     models to choose from, output formats
    GET  /api/status                     input, weights, the job and its progress, preview, result
    POST /api/upload?kind=input&name=N   body: a video or a zip of frames (becomes the input)
    POST /api/upload?kind=frame&name=N&index=I&count=C   one frame of a folder; the last one ends it
    POST /api/upload?kind=weights&name=N body: a weights file
    POST /api/preview                    {"model", "use_weights", "sigma", "frame"}: restore one frame
    POST /api/run                        {"model", "use_weights", "sigma", "format"}: the whole input
    POST /api/cancel                     stop the job
    GET  /api/preview/NAME.png           the preview's before (bicubic) and after images
    GET  /api/result                     the result file (a download)

Every POST must carry the header ``X-RVRT-UI: 1``, which a page of another site cannot send
without the browser asking first (and this server never says yes), and, while bound to a loopback
address, the ``Host`` header must name that address: together they keep other web sites (and DNS
rebinding) from driving the server through the user's browser.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import socket
import sys
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rvrt.errors import InputError
from rvrt.ui.app import Busy, TooLarge, UIApp, one_line

__all__ = ["UIServer", "make_server", "is_loopback"]

log = logging.getLogger(__name__)

_JSON_LIMIT = 64 << 10
_CONTENT_TYPES = {".png": "image/png", ".mp4": "video/mp4", ".mkv": "video/x-matroska", ".zip": "application/zip"}


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class UIServer(ThreadingHTTPServer):
    """The server: one :class:`UIApp`, requests on threads (a status poll answers while a frame
    uploads or a job runs)."""

    daemon_threads = True

    def __init__(self, host: str, port: int, app: UIApp) -> None:
        if ":" in host.strip("[]"):
            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), _Handler)
        self.app = app
        self.host = host
        self.port = self.server_address[1]
        self.loopback = is_loopback(host)
        name = f"[{host.strip('[]')}]" if ":" in host else host
        self.url = f"http://{name}:{self.port}/"
        loop_names = {"localhost", "127.0.0.1", "[::1]", name}
        self.allowed_hosts = {f"{n}:{self.port}" for n in loop_names}


def make_server(host: str = "127.0.0.1", port: int = 0, app: UIApp | None = None, **app_kwargs: Any) -> UIServer:
    """A server for ``app`` (a new :class:`UIApp` of ``app_kwargs`` if None) on ``host:port``
    (port 0: a free one, see ``server.port``); serve it with ``serve_forever()``."""
    return UIServer(host, port, app if app is not None else UIApp(**app_kwargs))


class _Handler(BaseHTTPRequestHandler):
    server: UIServer
    server_version = "rvrt-ui"
    # one request per connection: a refused upload is answered without reading its body, which
    # then must not be read as the next request
    protocol_version = "HTTP/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    # --- answers ---------------------------------------------------------------------------------

    def _send(self, status: int, body: bytes, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _json(self, value: Any, status: int = 200) -> None:
        self._send(status, json.dumps(value).encode(), "application/json")

    def _error(self, status: int, message: str) -> None:
        self.close_connection = True
        self._json({"error": message}, status)

    def _file(self, path: Path, download: bool = False) -> None:
        size = path.stat().st_size
        self.send_response(200)
        self.send_header("Content-Type", _CONTENT_TYPES.get(path.suffix.lower(), "application/octet-stream"))
        self.send_header("Content-Length", str(size))
        self.send_header("Cache-Control", "no-store")
        if download:
            self.send_header("Content-Disposition", f'attachment; filename="{path.name}"')
        self.end_headers()
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                self.wfile.write(chunk)

    # --- requests --------------------------------------------------------------------------------

    def _host_ok(self) -> bool:
        if not self.server.loopback:
            return True
        return self.headers.get("Host", "") in self.server.allowed_hosts

    def do_GET(self) -> None:
        url = urlsplit(self.path)
        try:
            if not self._host_ok():
                return self._error(HTTPStatus.FORBIDDEN, f"unexpected Host header; open {self.server.url}")
            app = self.server.app
            if url.path in ("/", "/index.html"):
                page = resources.files("rvrt.ui").joinpath("page.html").read_bytes()
                return self._send(200, page, "text/html; charset=utf-8")
            if url.path == "/api/status":
                return self._json(app.status())
            if url.path == "/api/models":
                return self._json(app.models())
            if url.path.startswith("/api/preview/"):
                return self._file(app.preview_file(url.path.rsplit("/", 1)[-1]))
            if url.path == "/api/result":
                return self._file(app.result_file(), download=True)
            return self._error(HTTPStatus.NOT_FOUND, f"not found: {url.path}")
        except (InputError, FileNotFoundError) as err:
            return self._error(HTTPStatus.NOT_FOUND, one_line(err))
        except (BrokenPipeError, ConnectionResetError):
            return None

    do_HEAD = do_GET

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        app = self.server.app
        try:
            if not self._host_ok():
                return self._error(HTTPStatus.FORBIDDEN, f"unexpected Host header; open {self.server.url}")
            if self.headers.get("X-RVRT-UI") != "1":
                return self._error(HTTPStatus.FORBIDDEN, "refused: requests must come from the rvrt ui page")
            length = self._length()
            if length is None:
                return None
            if url.path == "/api/upload":
                body = _Body(self.rfile, length)
                try:
                    return self._json(self._upload(parse_qs(url.query), body, length))
                except (InputError, Busy):
                    # refused before the body was read (a name, a job running): read it anyway, so that
                    # the browser gets the answer instead of a reset connection; but not one over the limit
                    if not isinstance(sys.exc_info()[1], TooLarge):
                        body.drain(app.max_upload_bytes)
                    raise
            if length > _JSON_LIMIT:
                return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, "request too large")
            request = self._read_json(length)
            if url.path == "/api/preview":
                return self._json(app.start_preview(request))
            if url.path == "/api/run":
                return self._json(app.start_run(request))
            if url.path == "/api/cancel":
                return self._json(app.cancel())
            return self._error(HTTPStatus.NOT_FOUND, f"not found: {url.path}")
        except Busy as err:
            return self._error(HTTPStatus.CONFLICT, one_line(err))
        except TooLarge as err:
            return self._error(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, one_line(err))
        except InputError as err:
            return self._error(HTTPStatus.BAD_REQUEST, one_line(err))
        except (BrokenPipeError, ConnectionResetError):
            return None
        except Exception as err:  # a bug or the system (a full disk): one line on the page, the trace in the log
            log.exception("rvrt ui: %s failed", url.path)
            return self._error(HTTPStatus.INTERNAL_SERVER_ERROR, one_line(err))

    def _length(self) -> int | None:
        text = self.headers.get("Content-Length")
        try:
            length = int(text) if text is not None else -1
        except ValueError:
            length = -1
        if length < 0:
            self._error(HTTPStatus.LENGTH_REQUIRED, "a Content-Length header is needed")
            return None
        return length

    def _read_json(self, length: int) -> dict[str, Any]:
        body = self.rfile.read(length) if length else b"{}"
        try:
            value = json.loads(body or b"{}")
        except ValueError:
            raise InputError("the request is not JSON") from None
        if not isinstance(value, dict):
            raise InputError("the request must be a JSON object")
        return value

    def _upload(self, query: dict[str, list[str]], body: _Body, length: int) -> dict[str, Any]:
        def arg(key: str) -> str:
            values = query.get(key)
            if not values:
                raise InputError(f"missing ?{key}= in the upload")
            return values[0]

        app, kind, name = self.server.app, arg("kind"), arg("name")
        if kind == "input":
            return app.upload_input(name, body, length)
        if kind == "weights":
            return app.upload_weights(name, body, length)
        if kind == "frame":
            try:
                index, count = int(arg("index")), int(arg("count"))
            except ValueError:
                raise InputError("index and count must be whole numbers") from None
            return app.upload_frame(name, body, length, index, count)
        raise InputError(f"unknown upload kind {kind!r}: input, frame or weights")


class _Body:
    """The body of a request, read at most ``length`` bytes, counting what was read."""

    def __init__(self, stream, length: int) -> None:
        self._stream = stream
        self.left = length

    def read(self, n: int) -> bytes:
        data = self._stream.read(min(n, self.left)) if self.left > 0 else b""
        self.left -= len(data)
        return data

    def drain(self, limit: int) -> None:
        if self.left <= limit:
            while self.left > 0 and self.read(1 << 20):
                pass
