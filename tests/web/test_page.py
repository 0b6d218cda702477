"""The draw-a-digit page in a real browser: headless Chromium, onnxruntime-web (WASM)."""

from __future__ import annotations

import base64
import io
import os

import numpy as np
import pytest
from PIL import Image

from runtime.images import load_image
from runtime.ink import mnist_style
from runtime.mnist import load_split
from runtime.session import Classifier
from tests.conftest import ROOT
from tests.web.test_node import EXAMPLES, PROBABILITY_TOLERANCE

CNN = ROOT / "exported" / "mnist_cnn.onnx"
BLANK = "\N{EN DASH}"  # what the page shows where it has no answer
SCREENSHOT = ROOT / "build" / "web-screenshot.png"  # MNIST_EDGE_SCREENSHOT=path saves it there too


@pytest.fixture(scope="module")
def page(browser, page_url):
    browser.get(page_url)
    browser.execute_async_script("arguments[arguments.length - 1](window.mnistEdge.ready)")
    return browser


def call(page, script: str, *args):
    """Run `script` (a JS expression over args[0..], maybe a promise) and return its value."""
    return page.execute_async_script(
        "const done = arguments[arguments.length - 1]; const args = arguments;"
        f"Promise.resolve({script}).then(done, (e) => done({{error: String(e)}}));",
        *args,
    )


def shown(page) -> tuple[str, str]:
    label = page.find_element("id", "label").text
    latency = page.find_element("id", "latency").text
    return label, latency


def test_page_preprocesses_images_as_python_does(page):
    for path in EXAMPLES:
        rgba = np.asarray(Image.open(path).convert("RGBA"))
        h, w = rgba.shape[:2]
        found = call(
            page,
            "mnistEdge.preprocessRGBA(args[0], args[1], args[2], false)",
            rgba.ravel().tolist(),
            w,
            h,
        )
        expected = load_image(path).astype(int)
        assert np.abs(np.array(found).reshape(28, 28) - expected).max() <= 1, path.name


def test_page_shows_the_label_of_mnist_digits_painted_on_the_pad(page, real_mnist):
    test = load_split("test", real_mnist)
    images, labels = test.images[:10], test.labels[:10]
    classifier = Classifier(CNN)
    for image, label in zip(images, labels, strict=True):
        result = call(
            page,
            "mnistEdge.paintPixels(args[0]).then((r) => ({label: r.label, "
            "pixels: Array.from(r.pixels), probabilities: Array.from(r.probabilities)}))",
            image.ravel().tolist(),
        )
        shown_label, latency = shown(page)
        assert shown_label == str(result["label"]) == str(label)
        assert "inference:" in latency and f"{BLANK} ms" not in latency
        # What the page fed the model is what Python makes of the pad's own pixels ...
        pad = canvas_gray(page)
        np.testing.assert_array_equal(np.array(result["pixels"]).reshape(28, 28), mnist_style(pad))
        # ... and the page's probabilities are the Python runtime's on that input.
        expected = classifier.predict_proba(np.array(result["pixels"], np.uint8).reshape(28, 28))
        assert np.abs(np.array(result["probabilities"]) - expected[0]).max() < PROBABILITY_TOLERANCE


@pytest.mark.parametrize("model", ["mnist_edge", "mnist_edge.int8"])
def test_page_runs_the_uint8_edge_models_too(browser, page_url, real_mnist, model):
    browser.get(f"{page_url}?model={model}")
    call(browser, "mnistEdge.ready")
    assert f"{model}.onnx" in browser.find_element("id", "model-name").text
    test = load_split("test", real_mnist)
    images, labels = test.images[10:15], test.labels[10:15]
    edge = Classifier(ROOT / "exported" / f"{model}.onnx")
    for image, label in zip(images, labels, strict=True):
        result = call(browser, "mnistEdge.classifyPixels(args[0])", image.ravel().tolist())
        expected = edge.predict_proba(image)[0]
        assert np.argmax(result) == label
        assert np.abs(np.array(result) - expected).max() < PROBABILITY_TOLERANCE
    browser.get(page_url)  # leave the page as the other tests expect it
    call(browser, "mnistEdge.ready")


def canvas_gray(page) -> np.ndarray:
    """The pad's pixels as Python's runtime would read them from a PNG of it."""
    png = call(page, "document.getElementById('pad').toDataURL('image/png')")
    data = base64.b64decode(png.split(",", 1)[1])
    rgb = np.asarray(Image.open(io.BytesIO(data)).convert("L"), dtype=np.float64)
    return rgb / 255


def draw(page, strokes: list[list[tuple[int, int]]]) -> None:
    """Draw with the mouse, stroke by stroke; points on the 280x280 pad."""
    from selenium.webdriver import ActionChains

    pad = page.find_element("id", "pad")
    # the whole pad in view: another test may have scrolled the page down to the number pad
    page.execute_script("arguments[0].scrollIntoView({block: 'center'})", pad)
    actions = ActionChains(page, duration=10)
    for stroke in strokes:
        # move_to_element_with_offset counts from the element's centre.
        x, y = stroke[0]
        actions.move_to_element_with_offset(pad, x - 140, y - 140).click_and_hold()
        for x, y in stroke[1:]:
            actions.move_to_element_with_offset(pad, x - 140, y - 140)
        actions.release()
    actions.perform()


def test_page_reads_digits_drawn_with_the_mouse(page):
    seven = [[(80, 60), (200, 60), (130, 230)]]
    four = [[(110, 50), (80, 160), (190, 160)], [(170, 90), (170, 240)]]
    for strokes, digit in ((seven, "7"), (four, "4")):
        call(page, "mnistEdge.clear()")
        draw(page, strokes)
        result = call(page, "mnistEdge.idle().then((r) => r && r.label)")
        assert shown(page)[0] == str(result) == digit
    SCREENSHOT.parent.mkdir(exist_ok=True)
    page.save_screenshot(str(SCREENSHOT))
    if os.environ.get("MNIST_EDGE_SCREENSHOT"):
        page.save_screenshot(os.environ["MNIST_EDGE_SCREENSHOT"])
    errors = [e for e in page.get_log("browser") if e["level"] == "SEVERE"]
    assert errors == []


def test_page_clear_button_resets_the_answer(page):
    call(page, "mnistEdge.clear()")
    draw(page, [[(140, 40), (140, 240)]])
    assert call(page, "mnistEdge.idle().then((r) => r && r.label)") == 1
    page.find_element("id", "clear").click()
    assert shown(page)[0] == BLANK
    bars = page.find_elements("css selector", "#bars .bar")
    widths = [bar.get_attribute("style") for bar in bars]
    assert widths == ["width: 0%;"] * 10


def test_page_reads_a_number_written_on_the_number_pad(page):
    rgba = np.asarray(Image.open(ROOT / "examples" / "number.png").convert("RGBA"))
    h, w = rgba.shape[:2]
    pixels = rgba.ravel().tolist()
    read = call(page, "mnistEdge.paintNumber(args[0], args[1], args[2])", pixels, w, h)
    assert read["number"] == "40917", read
    assert len(read["digits"]) == 5 and all(d["confidence"] > 0.9 for d in read["digits"])
    boxes = [d["box"]["x"] for d in read["digits"]]
    assert boxes == sorted(boxes)  # left to right, in the pad's pixels
    assert page.find_element("id", "number").text == "40917"
    assert page.find_element("id", "number-detail").text.startswith("confidences ")
    page.find_element("id", "number-clear").click()
    assert page.find_element("id", "number").text == BLANK
