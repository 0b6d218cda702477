"""`mnist-edge serve-web`'s server: the page and the models, nothing else of the checkout."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request

import pytest

from runtime import webpage
from runtime.errors import InputError
from runtime.webpage import _served, check_checkout, make_server


@pytest.mark.parametrize(
    ("path", "served"),
    [
        ("/web/", True),
        ("/web/app.js?v=2", True),
        ("/exported/mnist_cnn.onnx", True),
        ("/web", True),
        ("/pyproject.toml", False),
        ("/web/../pyproject.toml", False),
        ("/web/%2e%2e/.git/config", False),
        ("/webby/x", False),
    ],
)
def test_server_serves_only_the_page_and_the_models(path, served):
    assert _served(path) is served


def test_serve_web_says_what_is_missing_outside_a_checkout(tmp_path):
    with pytest.raises(InputError, match="expected the draw-a-digit page"):
        check_checkout(tmp_path)
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "index.html").write_text("<!doctype html>")
    with pytest.raises(InputError, match="npm ci --ignore-scripts --prefix web"):
        check_checkout(tmp_path)


@pytest.fixture
def checkout(tmp_path):
    (tmp_path / "web" / "node_modules" / "onnxruntime-web").mkdir(parents=True)
    (tmp_path / "web" / "index.html").write_text("<!doctype html>")
    (tmp_path / "web" / "app.js").write_text("export {};")
    (tmp_path / "secret.txt").write_text("private")
    return tmp_path


def test_server_sends_modules_as_javascript_and_refuses_the_rest(checkout):
    server = make_server("127.0.0.1", 0, checkout)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        with urllib.request.urlopen(f"{base}/web/app.js") as response:
            assert response.headers["Content-Type"] == "text/javascript"
        with urllib.request.urlopen(f"{base}/") as response:  # redirected to the page
            assert response.url == f"{base}/web/"
        with pytest.raises(urllib.error.HTTPError, match="404"):
            urllib.request.urlopen(f"{base}/secret.txt")
    finally:
        server.shutdown()
        server.server_close()


def test_serve_web_refuses_a_port_in_use_in_one_line(checkout):
    first = make_server("127.0.0.1", 0, checkout)
    port = first.server_address[1]
    try:
        with pytest.raises(InputError, match=f"--port {port}: cannot listen on 127.0.0.1:{port}"):
            make_server("127.0.0.1", port, checkout)
    finally:
        first.server_close()


def test_serve_web_finds_the_checkout_from_the_working_folder_or_above(checkout, monkeypatch):
    monkeypatch.setattr(webpage, "PACKAGE_PARENT", checkout / "elsewhere")  # a wheel install
    (checkout / "examples" / "deep").mkdir(parents=True)
    assert webpage.find_checkout(checkout / "examples" / "deep") == checkout
    assert webpage.find_checkout(checkout) == checkout


def test_serve_web_prefers_its_own_checkout_when_installed_editable(checkout, tmp_path_factory):
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    assert webpage.find_checkout(elsewhere) == webpage.PACKAGE_PARENT
