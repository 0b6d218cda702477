"""Serve the draw-a-digit page (web/) and the exported models from a checkout, on localhost.

The page loads onnxruntime-web as ES modules and WASM, which browsers accept only with the
right content types; Python's own table lacks .mjs and .onnx, hence this small server.
"""

from __future__ import annotations

import posixpath
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar
from urllib.parse import unquote, urlsplit

from runtime.errors import InputError

CHECKOUT = Path(__file__).resolve().parent.parent
SERVED = ("/web/", "/exported/")  # the rest of the checkout (.venv, .git) stays private
TYPES = {
    ".js": "text/javascript",
    ".mjs": "text/javascript",
    ".wasm": "application/wasm",
    ".onnx": "application/octet-stream",
}


class PageHandler(SimpleHTTPRequestHandler):
    extensions_map: ClassVar[dict[str, str]] = {**SimpleHTTPRequestHandler.extensions_map, **TYPES}

    def do_GET(self) -> None:
        if self.path in ("/", "/web"):
            self.send_response(302)
            self.send_header("Location", "/web/")
            self.end_headers()
        elif not _served(self.path):
            self.send_error(404, "only /web/ and /exported/ are served")
        else:
            super().do_GET()

    def end_headers(self) -> None:
        self.send_header("Cache-Control", "no-cache")  # a re-exported model shows on reload
        super().end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per file is noise; errors reach the browser's console


def _served(url_path: str) -> bool:
    # Judge the path the handler will open: normalised, so /web/../pyproject.toml is refused.
    path = posixpath.normpath(unquote(urlsplit(url_path).path))
    return (path + "/").startswith(SERVED)


def check_checkout(root: Path = CHECKOUT) -> None:
    """The page needs web/ and its npm packages, which exist only in a checkout."""
    if not (root / "web" / "index.html").is_file():
        raise InputError(
            f"{root / 'web'}: expected the draw-a-digit page of an mnist-edge checkout, "
            "found none (serve-web runs from a git checkout, not from an installed wheel)"
        )
    if not (root / "web" / "node_modules" / "onnxruntime-web").is_dir():
        raise InputError(
            f"{root / 'web' / 'node_modules'}: expected onnxruntime-web, found it not installed "
            "(run: npm ci --ignore-scripts --prefix web)"
        )


def make_server(host: str, port: int, root: Path = CHECKOUT) -> ThreadingHTTPServer:
    """A server for the page; port 0 picks a free one (see server.server_address)."""
    check_checkout(root)
    try:
        return ThreadingHTTPServer((host, port), partial(PageHandler, directory=str(root)))
    except OSError as e:
        raise InputError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror})") from None
