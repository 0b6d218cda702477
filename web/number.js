// The page's number pad: a line of digits written with the pointer -> web/segment.js (the steps
// of runtime/segment.py and read.py) -> every candidate digit in one onnxruntime-web call.
import { model, ort } from "./app.js";
import { classify } from "./model.js";
import { attachPad, latestOnly } from "./pad.js";
import { grayscale } from "./preprocess.js";
import { choose, planReading, ReadError } from "./segment.js";

const STROKE = 12; // px on the 150 px tall pad: a digit about 100 px tall, as on the digit pad
const LABELS = "0123456789".split("");

const canvas = document.getElementById("number-pad");
const numberBox = document.getElementById("number");
const detail = document.getElementById("number-detail");

/** RGBA pixels of a line of digits -> { number, digits: [{ label, confidence, box }], ms }. */
async function readRGBA(rgba, width, height) {
  const { session, contract } = await model;
  const start = performance.now();
  const plan = planReading(grayscale(rgba, width, height, false), width, height);
  const rows = await classify(ort, session, contract, plan.pictures, plan.count);
  const probs = new Float32Array(plan.count * LABELS.length);
  rows.forEach((row, i) => probs.set(row, i * LABELS.length));
  const digits = choose(plan, probs, LABELS);
  return { number: digits.map((d) => d.label).join(""), digits, ms: performance.now() - start };
}

async function readPad() {
  const { data, width, height } = pad.ink.getImageData(0, 0, canvas.width, canvas.height);
  try {
    const read = await readRGBA(data, width, height);
    numberBox.textContent = read.number;
    const sure = read.digits.map((d) => d.confidence.toFixed(2)).join(" ");
    detail.textContent = `confidences ${sure} · ${read.ms.toFixed(1)} ms`;
    window.mnistEdge.number = read;
  } catch (e) {
    numberBox.textContent = "–";
    detail.textContent = e instanceof ReadError ? e.message : `error: ${e.message}`;
    window.mnistEdge.number = null;
  }
}

const reading = latestOnly(readPad);
const pad = attachPad(canvas, STROKE, reading.schedule);
document.getElementById("number-clear").addEventListener("click", () => {
  pad.clear();
  numberBox.textContent = "–";
  detail.textContent = "write a number";
});

// For tests and the console.
Object.assign(window.mnistEdge, {
  number: null,
  readRGBA,
  /** Paint an RGBA picture onto the number pad, stretched to it, and read it. */
  paintNumber: async (rgba, width, height) => {
    const scratch = document.createElement("canvas");
    [scratch.width, scratch.height] = [width, height];
    scratch.getContext("2d").putImageData(new ImageData(Uint8ClampedArray.from(rgba), width, height), 0, 0);
    pad.clear();
    pad.ink.drawImage(scratch, 0, 0, canvas.width, canvas.height);
    reading.schedule();
    await reading.idle();
    return window.mnistEdge.number;
  },
});
