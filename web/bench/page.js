// One engine on one model in the browser, timed as web/bench/tfjs.mjs times it in Node.js; the
// engine's code is loaded only here, so that the cold start (navigation to first answer,
// performance.now() counts from the navigation) holds that engine's loading and no other's.
import { classify, readContract, scaled } from "../model.js";
import { pixelsFor, timeIt } from "./timing.js";

const MODULES = new URL("../node_modules/", import.meta.url).href;
const ONNX = { mlp: "mnist_mlp.onnx", edge: "mnist_edge.onnx" };
const TFJS = ["tfjs-core/dist/tf-core", "tfjs-backend-cpu/dist/tf-backend-cpu", "tfjs-backend-wasm/dist/tf-backend-wasm", "tfjs-layers/dist/tf-layers"];

function loadScript(src) {
  return new Promise((resolve, reject) => {
    const script = Object.assign(document.createElement("script"), { src });
    script.onload = resolve;
    script.onerror = () => reject(new Error(`could not load ${src}`));
    document.head.append(script);
  });
}

async function tfjsEngine(backend, model, threads) {
  for (const lib of TFJS) await loadScript(`${MODULES}@tensorflow/${lib}.min.js`);
  const tf = window.tf;
  tf.enableProdMode();
  if (backend === "wasm") {
    tf.wasm.setWasmPaths(`${MODULES}@tensorflow/tfjs-backend-wasm/dist/`);
    if (threads > 0) tf.wasm.setThreadsCount(threads); // only where the page is cross-origin isolated
  }
  await tf.setBackend(backend);
  await tf.ready();
  const layers = await tf.loadLayersModel(`models/${model}/model.json`);
  const scale = Math.fround(layers.getUserDefinedMetadata().pixel_scale);
  return {
    threads: backend === "wasm" ? tf.wasm.getThreadsCount() : 1,
    run: async (pixels, n) =>
      tf.tidy(() => layers.predict(tf.tensor4d(scaled(pixels.subarray(0, n * 784), scale), [n, 28, 28, 1])).dataSync()),
  };
}

async function ortEngine(model, threads) {
  const ort = await import(`${MODULES}onnxruntime-web/dist/ort.wasm.min.mjs`);
  ort.env.wasm.numThreads = threads; // more than 1 only where the page is cross-origin isolated
  ort.env.wasm.wasmPaths = `${MODULES}onnxruntime-web/dist/`;
  const response = await fetch(new URL(`../../exported/${ONNX[model]}`, import.meta.url));
  const session = await ort.InferenceSession.create(new Uint8Array(await response.arrayBuffer()));
  const contract = readContract(session);
  return {
    threads: crossOriginIsolated ? threads : 1,
    run: (pixels, n) => classify(ort, session, contract, pixels.subarray(0, n * 784), n),
  };
}

async function measure() {
  const query = new URLSearchParams(location.search);
  const [engine, model] = [query.get("engine"), query.get("model")];
  const threads = Number(query.get("threads") ?? 1);
  const batches = (query.get("batches") ?? "1,256").split(",").map(Number);
  const seconds = Number(query.get("seconds") ?? 2);
  const pixels = pixelsFor(Math.max(...batches));
  const runner = engine.startsWith("tfjs-") ? await tfjsEngine(engine.slice(5), model, threads) : await ortEngine(model, threads);
  await runner.run(pixels, 1);
  const cold = performance.now();
  if (query.has("answer")) return { probabilities: [...(await runner.run(pixels, 8))].flatMap((p) => (typeof p === "number" ? [p] : [...p])) };
  const rows = [];
  for (const batch of batches) {
    const timed = await timeIt(() => runner.run(pixels, batch), batch, seconds);
    rows.push({ world: "chromium", engine, threads: runner.threads, model, batch, cold_start_ms: cold, isolated: crossOriginIsolated, ...timed });
  }
  return rows;
}

window.benchResult = measure().catch((e) => ({ error: String(e) }));
window.benchResult.then((r) => {
  document.getElementById("out").textContent = JSON.stringify(r, null, 1);
});
