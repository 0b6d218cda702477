#!/usr/bin/env node
// TF.js (cpu and wasm backends) beside onnxruntime-node on the same weights, in Node.js: the
// seed's engine in the seed's world. benchmarks/tfjs.py runs this and the browser page.
//   node web/bench/tfjs.mjs answer LAYERS_DIR BACKEND IMAGES.u8   -> probabilities, as JSON
//   node web/bench/tfjs.mjs bench MODELS_DIR [--batches 1,256] [--seconds 2]  -> JSON lines
// LAYERS_DIR holds model.json and weights.bin (benchmarks/tfjs_models.py); IMAGES.u8 is n*784
// pixels; MODELS_DIR holds mlp/ and edge/, with ONNX twins in exported/.
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";

import * as tf from "@tensorflow/tfjs-core";
import "@tensorflow/tfjs-backend-cpu";
import { setWasmPaths } from "@tensorflow/tfjs-backend-wasm";
import * as tfl from "@tensorflow/tfjs-layers";
import * as ort from "onnxruntime-node";

import { classify, readContract, scaled } from "../model.js";
import { pixelsFor, timeIt } from "./timing.js";

const HERE = path.dirname(fileURLToPath(import.meta.url));
const EXPORTED = path.join(HERE, "..", "..", "exported");
const ONNX = { mlp: "mnist_mlp.onnx", edge: "mnist_edge.onnx" };
tf.enableProdMode(); // no debug checks, no "install tfjs-node" banner: as a deployed page runs
setWasmPaths(path.join(HERE, "..", "node_modules", "@tensorflow", "tfjs-backend-wasm", "dist") + path.sep);

/** A layers model from its folder, read with fs (tfjs-core in Node has no file:// loader). */
async function loadLayers(dir) {
  const json = JSON.parse(fs.readFileSync(path.join(dir, "model.json"), "utf8"));
  const bin = fs.readFileSync(path.join(dir, json.weightsManifest[0].paths[0]));
  const weightData = bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.byteLength);
  const model = await tfl.loadLayersModel(
    tf.io.fromMemory({ modelTopology: json.modelTopology, weightSpecs: json.weightsManifest[0].weights, weightData }),
  );
  return { model, scale: json.userDefinedMetadata.pixel_scale };
}

/** uint8 pixels (n*784) -> probabilities (n*10) from a TF.js layers model. */
function tfjsProbs({ model, scale }, pixels, n) {
  const s = Math.fround(scale); // float32, as onnxruntime's callers (model.js, numpy) scale
  return tf.tidy(() => {
    const x = tf.tensor4d(scaled(pixels.subarray(0, n * 784), s), [n, 28, 28, 1]);
    return model.predict(x).dataSync();
  });
}

async function useBackend(name) {
  await tf.setBackend(name);
  await tf.ready();
}

async function answer(dir, backend, file) {
  await useBackend(backend);
  const pixels = new Uint8Array(fs.readFileSync(file));
  const n = pixels.length / 784;
  console.log(JSON.stringify(Array.from(tfjsProbs(await loadLayers(dir), pixels, n))));
}

async function bench(dir, batches, seconds) {
  const pixels = pixelsFor(Math.max(...batches));
  const say = (row) => console.log(JSON.stringify({ world: "node", ...row }));
  for (const name of Object.keys(ONNX)) {
    for (const backend of ["cpu", "wasm"]) {
      await useBackend(backend);
      const started = performance.now();
      const model = await loadLayers(path.join(dir, name));
      tfjsProbs(model, pixels, 1);
      const cold = performance.now() - started;
      const threads = backend === "wasm" ? tf.backend().getThreadsCount?.() ?? 1 : 1;
      for (const batch of batches) {
        const timed = await timeIt(async () => tfjsProbs(model, pixels, batch), batch, seconds);
        say({ engine: `tfjs-${backend}`, threads, model: name, batch, cold_start_ms: cold, ...timed });
      }
      model.model.dispose();
    }
    for (const threads of [1, os.availableParallelism()]) {
      const started = performance.now();
      const session = await ort.InferenceSession.create(path.join(EXPORTED, ONNX[name]), {
        intraOpNumThreads: threads,
        interOpNumThreads: 1,
      });
      const contract = readContract(session);
      await classify(ort, session, contract, pixels.subarray(0, 784), 1);
      const cold = performance.now() - started;
      for (const batch of batches) {
        const images = pixels.subarray(0, batch * 784);
        const timed = await timeIt(() => classify(ort, session, contract, images, batch), batch, seconds);
        say({ engine: "onnxruntime-node", threads, model: name, batch, cold_start_ms: cold, ...timed });
      }
      await session.release();
    }
  }
}

const [command, ...rest] = process.argv.slice(2);
if (command === "answer") {
  await answer(...rest);
} else if (command === "bench") {
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: { batches: { type: "string", default: "1,256" }, seconds: { type: "string", default: "2" } },
  });
  await bench(positionals[0], values.batches.split(",").map(Number), Number(values.seconds));
} else {
  console.error("usage: node web/bench/tfjs.mjs answer LAYERS_DIR cpu|wasm IMAGES.u8 | bench MODELS_DIR [--batches 1,256] [--seconds 2]");
  process.exit(2);
}
