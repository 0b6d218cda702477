// The one digit in a picture, as runtime/ink.py finds it (digit_ink), step for step and
// constant for constant: see that file for the why of each step. Pure functions over typed
// arrays, row-major; an image is { data: Float64Array, w, h }.

const ANALYSIS_SIDE = 256;
const PAGE_CELL = 4;
const PAGE_KERNEL = 0.2;
const GROUP_CELL = 0.016;
const GROUP_REACH = 1;
const PART_REACH = 0.3;
const WINDOW_MARGIN = 0.25;
const PART_SHARE = 0.02;
const MIN_CONTRAST = 0.08;
const LINE_SLOPE = 0.2;
const LINE_COVER = 0.55;
const LINE_THICKNESS = 0.012;
const STROKE = 0.14;
const STROKE_RANGE = [0.09, 0.24];

/** Python's round() and numpy's rint: halves go to the even neighbour. */
export function roundHalfEven(v) {
  const r = Math.round(v);
  return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** Grayscale picture -> the digit's ink at the analysis size, 1 the strongest, 0 all else. */
export function digitInk(gray, width, height) {
  const small = reduce({ data: Float64Array.from(gray), w: width, h: height }, ANALYSIS_SIDE);
  const zeros = { data: new Float64Array(small.w * small.h), w: small.w, h: small.h };
  const side = inkSide(small);
  if (side === null) return zeros;
  const found = candidate(side.standing, side.window);
  return found.mask.some(Boolean) ? strokeToMnist(found.ink, found.mask) : zeros;
}

/** All the writing in a picture (runtime/ink.py writing): { ink, mask, factor } at `side`
 *  pixels on the long side, `factor` times smaller than the picture. */
export function writing(gray, width, height, side) {
  const small = reduce({ data: Float64Array.from(gray), w: width, h: height }, side);
  const factor = Math.ceil(Math.max(width, height) / side);
  const none = () => ({
    ink: { data: new Float64Array(small.w * small.h), w: small.w, h: small.h },
    mask: new Uint8Array(small.w * small.h),
    factor,
  });
  const found = inkSide(small);
  if (found === null) return none();
  const standing = found.standing.data;
  const threshold = Math.max(otsu(standing), MIN_CONTRAST);
  const lines = ruledLines(standing.map((v) => (v > threshold ? 1 : 0)), small.w, small.h);
  const mask = new Uint8Array(standing.length);
  const inMask = [];
  for (let i = 0; i < mask.length; i++) {
    mask[i] = standing[i] > threshold && !lines[i] ? 1 : 0;
    if (mask[i]) inMask.push(standing[i]);
  }
  if (!inMask.length) return { ...none(), mask };
  const level = median(inMask);
  const ink = new Float64Array(mask.length);
  for (let i = 0; i < ink.length; i++) {
    const v = (standing[i] - threshold / 2) / Math.max(level - threshold / 2, 1e-6);
    ink[i] = lines[i] ? 0 : Math.min(Math.max(v, 0), 1);
  }
  return { ink: { data: ink, w: small.w, h: small.h }, mask, factor };
}

/** What stands out from the page on the ink's side, and a window around the best digit found
 *  there; null when neither side holds anything like a digit. */
function inkSide(small) {
  const grid = reduce(small, Math.floor(Math.max(small.w, small.h) / PAGE_CELL));
  const k = kernel(grid);
  const closed = closing(grid, k);
  const opened = opening(grid, k);
  const dark = candidate(standOut(small, closing(opened, k), true));
  const light = candidate(standOut(small, opening(closed, k), false));
  if (Math.max(dark.score, light.score) <= 0) return null;
  const isDark = dark.score >= light.score;
  const standing = standOut(small, isDark ? closed : opened, isDark);
  return { standing, window: around((isDark ? dark : light).mask, small.w, small.h) };
}

function reduce(img, side) {
  const factor = Math.ceil(Math.max(img.w, img.h) / side);
  if (factor === 1) return { data: Float64Array.from(img.data), w: img.w, h: img.h };
  const [w, h] = [Math.floor(img.w / factor), Math.floor(img.h / factor)];
  const out = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let sum = 0;
      for (let dy = 0; dy < factor; dy++) {
        for (let dx = 0; dx < factor; dx++) sum += img.data[(y * factor + dy) * img.w + x * factor + dx];
      }
      out[y * w + x] = sum / (factor * factor);
    }
  }
  return { data: out, w, h };
}

function kernel(img) {
  return Math.max(3, roundHalfEven(PAGE_KERNEL * Math.max(img.w, img.h)) | 1);
}

function standOut(small, page, dark) {
  const under = resizeBilinear(page, small.w, small.h);
  const out = new Float64Array(small.data.length);
  for (let i = 0; i < out.length; i++) {
    const [s, u] = [small.data[i], under[i]];
    const v = dark ? (u - s) / Math.max(u, 1e-3) : (s - u) / Math.max(u, 1 - u);
    out[i] = Math.min(Math.max(v, 0), 1);
  }
  return { data: out, w: small.w, h: small.h };
}

function candidate(standing, window = null) {
  const { w, h } = standing;
  const focus = window ? standing.data.map((v, i) => v * window[i]) : standing.data;
  const threshold = Math.max(otsu(focus), MIN_CONTRAST);
  const lines = ruledLines(standing.data.map((v) => (v > threshold ? 1 : 0)), w, h);
  const mask = focus.map((v, i) => (v > threshold && !lines[i] ? 1 : 0));
  if (!mask.some(Boolean)) return { score: 0, ink: { data: focus, w, h }, mask };
  const { group, score } = theDigit(mask, focus, w, h);
  const inMask = [];
  for (let i = 0; i < mask.length; i++) {
    mask[i] = mask[i] && group[i] ? 1 : 0;
    if (mask[i]) inMask.push(focus[i]);
  }
  const level = median(inMask);
  const ink = new Float64Array(mask.length);
  for (let i = 0; i < ink.length; i++) {
    const v = (focus[i] - threshold / 2) / Math.max(level - threshold / 2, 1e-6);
    ink[i] = group[i] && !lines[i] ? Math.min(Math.max(v, 0), 1) : 0;
  }
  return { score, ink: { data: ink, w, h }, mask };
}

function otsu(values, bins = 256) {
  const counts = new Float64Array(bins);
  for (const v of values) counts[Math.min(Math.trunc(v * bins), bins - 1)]++;
  const total = values.length;
  let [w0, m0] = [0, 0];
  const cw = new Float64Array(bins);
  const cm = new Float64Array(bins);
  for (let i = 0; i < bins; i++) {
    const p = counts[i] / total;
    w0 += p;
    m0 += p * ((i + 0.5) / bins);
    [cw[i], cm[i]] = [w0, m0];
  }
  const mean = cm[bins - 1];
  let [best, bestValue] = [0, -Infinity];
  for (let i = 0; i < bins; i++) {
    const between = (mean * cw[i] - cm[i]) ** 2 / Math.max(cw[i] * (1 - cw[i]), 1e-12);
    if (between > bestValue) [best, bestValue] = [i, between];
  }
  return (best + 0.5) / bins;
}

function ruledLines(mask, w, h) {
  const lines = new Uint8Array(mask.length);
  const ys = [];
  const xs = [];
  for (let i = 0; i < mask.length; i++) {
    if (mask[i]) {
      ys.push(Math.floor(i / w));
      xs.push(i % w);
    }
  }
  if (ys.length === 0) return lines;
  const thin = Math.max(2, roundHalfEven(LINE_THICKNESS * h));
  const steps = Math.ceil((2 * LINE_SLOPE * w) / thin) + 1;
  const step = (2 * LINE_SLOPE) / (steps - 1);
  for (let s = 0; s < steps; s++) {
    const slope = s === steps - 1 ? LINE_SLOPE : s * step + -LINE_SLOPE; // numpy's linspace
    const offset = ys.map((y, i) => roundHalfEven(y - slope * xs[i]));
    let low = Infinity;
    for (const o of offset) low = Math.min(low, o);
    let high = -Infinity;
    for (let i = 0; i < offset.length; i++) {
      offset[i] -= low - thin - 1; // room for the rows above the first band
      high = Math.max(high, offset[i]);
    }
    const counts = new Int32Array(high + thin + 2);
    for (const o of offset) counts[o]++;
    const band = new Int32Array(counts.length - thin + 1); // band[b]: rows b .. b + thin - 1
    for (let b = 0; b < band.length; b++) for (let r = 0; r < thin; r++) band[b] += counts[b + r];
    for (let top = 0; top < band.length; top++) {
      if (band[top] < LINE_COVER * w) continue;
      const above = top >= thin ? band[top - thin] : 0;
      const below = top + thin < band.length ? band[top + thin] : 0;
      if (Math.max(above, below) >= band[top] / 2) continue; // a thick stroke, not a line
      for (let i = 0; i < offset.length; i++) {
        if (offset[i] >= top - 2 && offset[i] < top + thin + 2) lines[ys[i] * w + xs[i]] = 1;
      }
    }
  }
  return lines;
}

function theDigit(mask, darkness, w, h) {
  const cell = Math.max(2, roundHalfEven(GROUP_CELL * Math.max(w, h)));
  const [rows, cols] = [Math.ceil(h / cell), Math.ceil(w / cell)];
  const inked = new Uint8Array(rows * cols);
  const mass = new Float64Array(rows * cols);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      const c = Math.floor(y / cell) * cols + Math.floor(x / cell);
      inked[c] = 1;
      mass[c] += darkness[i];
    }
  }
  const { labels, count } = label(grow(inked, rows, cols, GROUP_REACH), rows, cols);
  if (count === 0) return { group: new Uint8Array(mask.length), score: 0 };
  const groups = [];
  for (let g = 1; g <= count; g++) {
    const box = [rows, cols, -1, -1];
    let score = 0;
    for (let c = 0; c < labels.length; c++) {
      if (labels[c] !== g) continue;
      const [r, q] = [Math.floor(c / cols), c % cols];
      box[0] = Math.min(box[0], r);
      box[1] = Math.min(box[1], q);
      box[2] = Math.max(box[2], r);
      box[3] = Math.max(box[3], q);
      score += mass[c];
    }
    if (box[0] === 0 || box[1] === 0 || box[2] === rows - 1 || box[3] === cols - 1) score *= 0.1;
    if (Math.max((box[2] - box[0] + 1) / rows, (box[3] - box[1] + 1) / cols) > 0.8) score *= 0.1;
    groups.push({ score, box });
  }
  let best = 0;
  for (let g = 1; g < count; g++) if (groups[g].score > groups[best].score) best = g;
  const { score } = groups[best];
  const box = [...groups[best].box];
  const chosen = new Set([best]);
  let grown = true;
  while (grown) {
    grown = false;
    const reach = Math.max(1, roundHalfEven(PART_REACH * Math.max(box[2] - box[0] + 1, box[3] - box[1] + 1)));
    for (let g = 0; g < count; g++) {
      const part = groups[g];
      if (chosen.has(g) || part.score < PART_SHARE * score || !near(box, part.box, reach)) continue;
      chosen.add(g);
      [box[0], box[1]] = [Math.min(box[0], part.box[0]), Math.min(box[1], part.box[1])];
      [box[2], box[3]] = [Math.max(box[2], part.box[2]), Math.max(box[3], part.box[3])];
      grown = true;
    }
  }
  const cells = grow(labels.map((l) => (l && chosen.has(l - 1) ? 1 : 0)), rows, cols, 1);
  const group = new Uint8Array(mask.length);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) group[y * w + x] = cells[Math.floor(y / cell) * cols + Math.floor(x / cell)];
  }
  return { group, score };
}

function near(box, other, reach) {
  return other[0] <= box[2] + reach && other[2] >= box[0] - reach && other[1] <= box[3] + reach && other[3] >= box[1] - reach;
}

/** 8-connected groups of cells, numbered in the order a row-major scan first meets them. */
export function label(cells, rows, cols) {
  const labels = new Int32Array(cells.length);
  let count = 0;
  for (let start = 0; start < cells.length; start++) {
    if (!cells[start] || labels[start]) continue;
    labels[start] = ++count;
    const stack = [start];
    while (stack.length) {
      const c = stack.pop();
      const [r, q] = [Math.floor(c / cols), c % cols];
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const [nr, nq] = [r + dy, q + dx];
          const n = nr * cols + nq;
          if (nr >= 0 && nr < rows && nq >= 0 && nq < cols && cells[n] && !labels[n]) {
            labels[n] = count;
            stack.push(n);
          }
        }
      }
    }
  }
  return { labels, count };
}

/** Cells within `reach` of a set one, diagonals included (edges repeated). */
export function grow(cells, rows, cols, reach) {
  const out = new Uint8Array(cells.length);
  for (let r = 0; r < rows; r++) {
    for (let q = 0; q < cols; q++) {
      let any = 0;
      for (let dy = -reach; dy <= reach && !any; dy++) {
        for (let dx = -reach; dx <= reach && !any; dx++) {
          const [nr, nq] = [Math.min(Math.max(r + dy, 0), rows - 1), Math.min(Math.max(q + dx, 0), cols - 1)];
          if (cells[nr * cols + nq]) any = 1;
        }
      }
      out[r * cols + q] = any;
    }
  }
  return out;
}

function around(mask, w, h) {
  let [top, left, bottom, right] = [h, w, -1, -1];
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    const [y, x] = [Math.floor(i / w), i % w];
    [top, left, bottom, right] = [Math.min(top, y), Math.min(left, x), Math.max(bottom, y), Math.max(right, x)];
  }
  const margin = Math.max(roundHalfEven(WINDOW_MARGIN * Math.max(bottom - top, right - left)), 2);
  const window = new Float64Array(mask.length);
  for (let y = Math.max(top - margin, 0); y <= Math.min(bottom + margin, h - 1); y++) {
    for (let x = Math.max(left - margin, 0); x <= Math.min(right + margin, w - 1); x++) window[y * w + x] = 1;
  }
  return window;
}

export function strokeToMnist(ink, mask) {
  const { w, h } = ink;
  let [top, left, bottom, right, area] = [h, w, -1, -1, 0];
  for (let i = 0; i < mask.length; i++) {
    if (!mask[i]) continue;
    const [y, x] = [Math.floor(i / w), i % w];
    [top, left, bottom, right] = [Math.min(top, y), Math.min(left, x), Math.max(bottom, y), Math.max(right, x)];
    area++;
  }
  const side = Math.max(bottom - top + 1, right - left + 1);
  const width = (2 * area) / Math.max(boundary(mask, w, h), 1);
  const ratio = width / side;
  if (ratio >= STROKE_RANGE[0] && ratio <= STROKE_RANGE[1]) return ink;
  const radius = roundHalfEven(Math.abs(STROKE * side - width) / 2);
  if (radius === 0) return ink;
  if (ratio < STROKE_RANGE[0]) return filter(ink, 2 * radius + 1, Math.max);
  const thinner = filter(ink, 2 * radius + 1, Math.min);
  let strong = 0;
  for (const v of thinner.data) if (v > 0.5) strong++;
  return strong > 0.3 * area ? thinner : ink;
}

function boundary(mask, w, h) {
  let edge = 0;
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const i = y * w + x;
      if (!mask[i]) continue;
      const inner = y > 0 && y < h - 1 && x > 0 && x < w - 1 && mask[i - w] && mask[i + w] && mask[i - 1] && mask[i + 1];
      if (!inner) edge++;
    }
  }
  return edge;
}

function closing(img, k) {
  return filter(filter(img, k, Math.max), k, Math.min);
}

function opening(img, k) {
  return filter(filter(img, k, Math.min), k, Math.max);
}

/** A k x k (k odd) max or min filter, edges repeated: rows, then columns. */
function filter(img, k, op) {
  const { w, h } = img;
  const r = k >> 1;
  const pass = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = img.data[y * w + Math.min(Math.max(x - r, 0), w - 1)];
      for (let d = -r + 1; d <= r; d++) v = op(v, img.data[y * w + Math.min(Math.max(x + d, 0), w - 1)]);
      pass[y * w + x] = v;
    }
  }
  const out = new Float64Array(w * h);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let v = pass[Math.min(Math.max(y - r, 0), h - 1) * w + x];
      for (let d = -r + 1; d <= r; d++) v = op(v, pass[Math.min(Math.max(y + d, 0), h - 1) * w + x]);
      out[y * w + x] = v;
    }
  }
  return { data: out, w, h };
}

function resizeBilinear(img, w, h) {
  const weights = (nIn, nOut) =>
    Array.from({ length: nOut }, (_, i) => {
      const x = Math.min(Math.max(((i + 0.5) * nIn) / nOut - 0.5, 0), nIn - 1);
      const lo = Math.floor(x);
      return [lo, Math.min(lo + 1, nIn - 1), x - lo];
    });
  const wx = weights(img.w, w);
  const wide = new Float64Array(img.h * w);
  for (let y = 0; y < img.h; y++) {
    for (let x = 0; x < w; x++) {
      const [x0, x1, fx] = wx[x];
      wide[y * w + x] = img.data[y * img.w + x0] * (1 - fx) + img.data[y * img.w + x1] * fx;
    }
  }
  const out = new Float64Array(w * h);
  weights(img.h, h).forEach(([y0, y1, fy], y) => {
    for (let x = 0; x < w; x++) out[y * w + x] = wide[y0 * w + x] * (1 - fy) + wide[y1 * w + x] * fy;
  });
  return out;
}

export function median(values) {
  const s = Float64Array.from(values).sort();
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}
