"""Serve the draw-a-digit page (web/) and the exported models from a checkout, on localhost.

The page and its npm packages live in a git checkout, not in the wheel (onnxruntime-web alone is
tens of MB): an editable install finds its own checkout, any other install finds the checkout it
is run from (the working folder or one above it), or the one `--root` names.

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

PACKAGE_PARENT = Path(__file__).resolve().parent.parent
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


def find_checkout(start: Path | None = None) -> Path:
    """The checkout to serve: the package's own (an editable install), else `start` (the
    working folder) or the nearest folder above it that holds web/index.html. Where none does,
    the package's, so that check_checkout says what is missing there."""
    here = Path.cwd() if start is None else start
    for root in (PACKAGE_PARENT, here, *here.resolve().parents):
        if (root / "web" / "index.html").is_file():
            return root
    return PACKAGE_PARENT


def check_checkout(root: Path) -> None:
    """The page needs web/ and its npm packages, which exist only in a checkout."""
    if not (root / "web" / "index.html").is_file():
        raise InputError(
            f"{root / 'web'}: expected the draw-a-digit page of an mnist-edge checkout, "
            "found none (run serve-web inside a git checkout of mnist-edge, or pass --root)"
        )
    if not (root / "web" / "node_modules" / "onnxruntime-web").is_dir():
        raise InputError(
            f"{root / 'web' / 'node_modules'}: expected onnxruntime-web, found it not installed "
            "(run: npm ci --ignore-scripts --prefix web)"
        )


def make_server(host: str, port: int, root: Path | None = None) -> ThreadingHTTPServer:
    """A server for the page of `root` (default: find_checkout()); port 0 picks a free one (see
    server.server_address)."""
    root = find_checkout() if root is None else root
    check_checkout(root)
    try:
        return ThreadingHTTPServer((host, port), partial(PageHandler, directory=str(root)))
    except OSError as e:
        raise InputError(f"--port {port}: cannot listen on {host}:{port} ({e.strerror})") from None
