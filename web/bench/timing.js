// Timing shared by the Node.js and browser benchmarks (web/bench/tfjs.mjs, web/bench/page.js).

function percentile(sorted, q) {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
}

/** Time `run` (one batch of `batch` images) for `seconds`, at least 5 runs, after 3 warm-up
 *  runs: p50 and p99 in ms, images per second from the mean. */
export async function timeIt(run, batch, seconds) {
  for (let i = 0; i < 3; i++) await run();
  const times = [];
  const end = performance.now() + seconds * 1000;
  while (times.length < 5 || performance.now() < end) {
    const start = performance.now();
    await run();
    times.push(performance.now() - start);
  }
  times.sort((a, b) => a - b);
  const mean = times.reduce((a, b) => a + b, 0) / times.length;
  return {
    p50_ms: percentile(times, 0.5),
    p99_ms: percentile(times, 0.99),
    images_per_s: (batch * 1000) / mean,
    runs: times.length,
  };
}

/** `n` MNIST-sized images of fixed, spread pixel values (timing does not need digits). */
export function pixelsFor(n) {
  return new Uint8Array(n * 784).map((_, i) => (i * 2654435761) >>> 24);
}
