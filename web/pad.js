// A canvas to write on with a mouse, pen or finger: white ink on black, as MNIST's digits are.

/** Wire `canvas` for drawing strokes `stroke` px wide; `changed()` after each bit of ink.
 *  Returns { clear }. */
export function attachPad(canvas, stroke, changed) {
  const ink = canvas.getContext("2d", { willReadFrequently: true });
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [((event.clientX - box.left) * canvas.width) / box.width, ((event.clientY - box.top) * canvas.height) / box.height];
  };
  let last = null;
  canvas.addEventListener("pointerdown", (event) => {
    canvas.setPointerCapture(event.pointerId);
    last = point(event);
    ink.beginPath();
    ink.arc(last[0], last[1], stroke / 2, 0, 2 * Math.PI);
    ink.fillStyle = "#fff";
    ink.fill();
    changed();
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!last) return;
    const next = point(event);
    ink.strokeStyle = "#fff";
    ink.lineWidth = stroke;
    ink.lineCap = ink.lineJoin = "round";
    ink.beginPath();
    ink.moveTo(...last);
    ink.lineTo(...next);
    ink.stroke();
    last = next;
    changed();
  });
  for (const type of ["pointerup", "pointercancel"]) canvas.addEventListener(type, () => (last = null));
  const clear = () => {
    ink.fillStyle = "#000";
    ink.fillRect(0, 0, canvas.width, canvas.height);
  };
  clear();
  return { ink, clear };
}

/** Run `work` at most once per frame and never two at a time: the latest drawing wins.
 *  Returns { schedule, idle } (idle resolves once nothing is pending). */
export function latestOnly(work) {
  let running = null;
  let dirty = false;
  const waiters = [];
  async function run() {
    while (dirty) {
      dirty = false;
      await work();
    }
    running = null;
    waiters.splice(0).forEach((resolve) => resolve());
  }
  return {
    schedule() {
      dirty = true;
      if (!running) running = requestAnimationFrame(run);
    },
    idle: () => (running || dirty ? new Promise((resolve) => waiters.push(resolve)) : Promise.resolve()),
  };
}
