// The draw-a-digit page: pointer strokes on a canvas -> MNIST-style 28x28 (preprocess.js, the
// same steps as the Python runtime) -> onnxruntime-web (WASM) -> label, bars and latency.
import * as ort from "./node_modules/onnxruntime-web/dist/ort.wasm.min.mjs";

import { argmax, classify, readContract } from "./model.js";
import { attachPad, latestOnly } from "./pad.js";
import { BlankImageError, SIZE, grayscale, mnistStyle } from "./preprocess.js";

export { ort };

const STROKE = 24; // px on the 280 px pad: about MNIST's 2-3 px once fitted into 20x20
const params = new URLSearchParams(location.search);
const modelName = params.get("model") ?? "mnist_cnn";

const pad = document.getElementById("pad");
const seen = document.getElementById("seen").getContext("2d");
const status = document.getElementById("status");
const labelBox = document.getElementById("label");
const latencyBox = document.getElementById("latency");
const bars = document.getElementById("bars");

const barRows = Array.from({ length: 10 }, (_, digit) => {
  const li = document.createElement("li");
  li.innerHTML = `<span>${digit}</span><div class="bar" style="width:0%"></div><span class="value">0.0%</span>`;
  bars.append(li);
  return li;
});

async function loadModel() {
  if (!/^[\w.-]+$/.test(modelName)) throw new Error(`model: expected a name such as mnist_cnn, found '${modelName}'`);
  document.getElementById("model-name").textContent = `exported/${modelName}.onnx`;
  ort.env.wasm.numThreads = 1; // threads need cross-origin isolation; one is plenty here
  ort.env.wasm.wasmPaths = new URL("./node_modules/onnxruntime-web/dist/", import.meta.url).href;
  const url = new URL(`../exported/${modelName}.onnx`, import.meta.url);
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url.pathname}: expected an ONNX model, found HTTP ${response.status}`);
  const session = await ort.InferenceSession.create(new Uint8Array(await response.arrayBuffer()));
  return { session, contract: readContract(session) };
}

export const model = loadModel();

/** The page's pipeline on RGBA pixels: preprocess, run, time both. */
async function predictRGBA(rgba, width, height, hasAlpha = false) {
  const { session, contract } = await model;
  const t0 = performance.now();
  const pixels = mnistStyle(grayscale(rgba, width, height, hasAlpha), width, height);
  const t1 = performance.now();
  const [probabilities] = await classify(ort, session, contract, pixels, 1);
  const t2 = performance.now();
  return { pixels, probabilities, label: argmax(probabilities), preprocessMs: t1 - t0, inferenceMs: t2 - t1 };
}

function show(result) {
  labelBox.textContent = result ? String(result.label) : "–";
  barRows.forEach((li, digit) => {
    const p = result ? result.probabilities[digit] : 0;
    li.querySelector(".bar").style.width = `${(100 * p).toFixed(1)}%`;
    li.querySelector(".value").textContent = `${(100 * p).toFixed(1)}%`;
    li.classList.toggle("best", Boolean(result) && digit === result.label);
  });
  latencyBox.textContent = result
    ? `inference: ${result.inferenceMs.toFixed(2)} ms · preprocessing: ${result.preprocessMs.toFixed(2)} ms`
    : "inference: – ms · preprocessing: – ms";
  const image = seen.createImageData(SIZE, SIZE);
  if (result) {
    result.pixels.forEach((v, i) => image.data.set([v, v, v, 255], 4 * i));
  }
  seen.putImageData(image, 0, 0);
}

async function predictPad() {
  const { data, width, height } = ink.getImageData(0, 0, pad.width, pad.height);
  try {
    const result = await predictRGBA(data, width, height);
    show(result);
    status.textContent = "ready";
    window.mnistEdge.last = result;
  } catch (e) {
    show(null);
    status.textContent = e instanceof BlankImageError ? "draw a digit" : `error: ${e.message}`;
    window.mnistEdge.last = null;
  }
}
const predicting = latestOnly(predictPad);
const { ink, clear: blank } = attachPad(pad, STROKE, predicting.schedule);

function clear() {
  blank();
  show(null);
}
document.getElementById("clear").addEventListener("click", clear);

// For tests and the console: the same pipeline, without a mouse.
window.mnistEdge = {
  ready: model.then(() => (status.textContent = "ready: draw a digit")),
  last: null,
  /** Resolves with the latest shown result once no prediction is pending. */
  idle: () => predicting.idle().then(() => window.mnistEdge.last),
  preprocessRGBA: (rgba, width, height, hasAlpha) => Array.from(mnistStyle(grayscale(rgba, width, height, hasAlpha), width, height)),
  classifyPixels: async (pixels) => {
    const { session, contract } = await model;
    const [row] = await classify(ort, session, contract, Uint8Array.from(pixels), 1);
    return Array.from(row);
  },
  /** Paint a 28x28 uint8 image onto the pad, each pixel a 10x10 block, and predict it. */
  paintPixels: (pixels) => {
    const small = new ImageData(SIZE, SIZE);
    pixels.forEach((v, i) => small.data.set([v, v, v, 255], 4 * i));
    const scratch = document.createElement("canvas");
    scratch.width = scratch.height = SIZE;
    scratch.getContext("2d").putImageData(small, 0, 0);
    clear();
    ink.imageSmoothingEnabled = false;
    ink.drawImage(scratch, 0, 0, pad.width, pad.height);
    predicting.schedule();
    return window.mnistEdge.idle();
  },
  clear,
};
model.catch((e) => {
  status.textContent = `error: ${e.message}`;
});
show(null);
