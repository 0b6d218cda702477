#!/usr/bin/env node
// Classify MNIST IDX files or PNG images with onnxruntime-node: the Node.js twin of
// `mnist-edge predict`, printing what it prints (plus each image's probabilities in --json).
// Usage: node web/classify.js [--model FILE] [--limit N] [--json] INPUT...
import fs from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import zlib from "node:zlib";

import * as ort from "onnxruntime-node";
import { PNG } from "pngjs";

import { argmax, classify, readContract } from "./model.js";
import { SIZE, grayscale, mnistStyle } from "./preprocess.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const DEFAULT_MODEL = path.join(HERE, "..", "exported", "mnist_cnn.onnx");
const BATCH = 256;
const IDX_IMAGES = 0x00000803; // ubyte, 3 dimensions
const USAGE = `usage: node web/classify.js [--model FILE] [--limit N] [--threads N] [--json] INPUT...

Classifies MNIST IDX image files (.gz or raw) and PNG images with an mnist-edge ONNX model.
  --model FILE   ONNX model (default: exported/mnist_cnn.onnx)
  --limit N      classify at most N images of each IDX file
  --threads N    intra-op threads (default: onnxruntime's choice)
  --json         one JSON object per image: input, label, confidence, probabilities`;

class UsageError extends Error {}

function fail(message) {
  throw new UsageError(message);
}

/** IDX images file -> { pixels: Uint8Array(n*784), n } (the first `limit` images). */
export function readIdxImages(file, limit = Infinity) {
  let bytes = fs.readFileSync(file);
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    try {
      bytes = zlib.gunzipSync(bytes);
    } catch (e) {
      fail(`${file}: cannot decompress gzip (${e.message})`);
    }
  }
  if (bytes.length < 16) fail(`${file}: expected an IDX header of 16 bytes, found ${bytes.length} bytes`);
  const magic = bytes.readUInt32BE(0);
  if (magic !== IDX_IMAGES) {
    fail(`${file}: expected IDX images (magic 0x00000803), found magic 0x${magic.toString(16).padStart(8, "0")}`);
  }
  const [count, rows, cols] = [bytes.readUInt32BE(4), bytes.readUInt32BE(8), bytes.readUInt32BE(12)];
  if (rows !== SIZE || cols !== SIZE) fail(`${file}: expected 28x28 images, found ${rows}x${cols}`);
  if (bytes.length !== 16 + count * SIZE * SIZE) {
    fail(`${file}: expected ${16 + count * SIZE * SIZE} bytes for ${count} images, found ${bytes.length}`);
  }
  const n = Math.min(count, limit);
  return { pixels: new Uint8Array(bytes.buffer, bytes.byteOffset + 16, n * SIZE * SIZE), n };
}

/** PNG file -> MNIST-style Uint8Array(784), preprocessed as runtime/preprocess.py does. */
export function readPng(file) {
  let png;
  try {
    png = PNG.sync.read(fs.readFileSync(file));
  } catch (e) {
    fail(`${file}: cannot decode PNG (${e.message})`);
  }
  const hasAlpha = png.alpha || png.data.some((v, i) => i % 4 === 3 && v < 255);
  try {
    return mnistStyle(grayscale(png.data, png.width, png.height, hasAlpha), png.width, png.height);
  } catch (e) {
    fail(`${file}: ${e.message}`);
  }
}

function isPng(file) {
  const head = Buffer.alloc(8);
  const fd = fs.openSync(file, "r");
  fs.readSync(fd, head, 0, 8, 0);
  fs.closeSync(fd);
  return head.equals(Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]));
}

function positiveInt(name, value) {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1) fail(`--${name}: expected a positive integer, found '${value}'`);
  return n;
}

async function main(argv) {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        model: { type: "string", default: DEFAULT_MODEL },
        limit: { type: "string" },
        threads: { type: "string" },
        json: { type: "boolean", default: false },
        help: { type: "boolean", short: "h", default: false },
      },
    });
  } catch (e) {
    fail(e.message);
  }
  const { values, positionals } = args;
  if (values.help) {
    console.log(USAGE);
    return;
  }
  if (positionals.length === 0) fail("INPUT: expected at least one IDX or PNG file, found none");
  const limit = values.limit === undefined ? Infinity : positiveInt("limit", values.limit);
  const options = values.threads === undefined ? {} : { intraOpNumThreads: positiveInt("threads", values.threads) };
  if (!fs.existsSync(values.model)) fail(`${values.model}: no such model file`);
  let session;
  try {
    session = await ort.InferenceSession.create(values.model, options);
  } catch (e) {
    fail(`${values.model}: expected an ONNX model onnxruntime can load (${e.message.split("\n")[0]})`);
  }
  let contract;
  try {
    contract = readContract(session);
  } catch (e) {
    fail(`${values.model}: ${e.message}`);
  }

  for (const file of positionals) {
    if (!fs.existsSync(file) || !fs.statSync(file).isFile()) fail(`${file}: no such file`);
    const png = isPng(file);
    const { pixels, n } = png ? { pixels: readPng(file), n: 1 } : readIdxImages(file, limit);
    for (let start = 0; start < n; start += BATCH) {
      const count = Math.min(BATCH, n - start);
      const batch = pixels.subarray(start * SIZE * SIZE, (start + count) * SIZE * SIZE);
      const rows = await classify(ort, session, contract, batch, count);
      const name = (i) => (png ? file : `${file}[${start + i}]`);
      rows.forEach((row, i) => report(name(i), row, values.json));
    }
  }
}

/** One line as `mnist-edge predict` prints it: name, label, confidence (4 decimals). */
function report(name, row, json) {
  const label = argmax(row);
  if (json) {
    const confidence = Math.round(row[label] * 1e6) / 1e6;
    console.log(JSON.stringify({ input: name, label: String(label), confidence, probabilities: Array.from(row) }));
  } else {
    console.log(`${name}\t${label}\t${row[label].toFixed(4)}`);
  }
}

if (process.argv[1] && fs.realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  main(process.argv.slice(2)).catch((e) => {
    // Users get one line; anything else is a bug and keeps its stack trace.
    if (!(e instanceof UsageError)) throw e;
    console.error(`error: ${e.message}`);
    process.exitCode = 2;
  });
}
