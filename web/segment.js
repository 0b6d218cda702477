// A handwritten number -> its digits, as runtime/segment.py finds them and runtime/read.py
// chooses among the ways to read them, step for step and constant for constant: see those
// files for the why of each step. Pure functions; images are row-major typed arrays.

import { grow, label, median, roundHalfEven, strokeToMnist, writing } from "./ink.js";
import { fit } from "./preprocess.js";

const READ_SIDE = 512;
export const MAX_DIGITS = 32;
const OVERLAP = 0.5;
const UNDERLINE = [2.0, 0.25];
const SPECK = 0.3;
const GAP = 0.3;
const PART = 0.6;
const DIGIT_ASPECT = 0.7;
const WIDE = 1.0;
const WIDEST = 1.45;
const NARROWEST = 0.45;
const CUT_WINDOW = 0.3;
const PRIOR = 0.25;
const ONE_DIGIT = 1.6;

export class ReadError extends Error {}

/** A grayscale picture (values in [0, 1]) of one line of digits -> the plan: every candidate
 *  digit as 28x28 pixels to classify in one call, and how to choose among them. */
export function planReading(gray, width, height) {
  const line = findLine(gray, width, height);
  const options = line.digits.map((d) => readings(line, d));
  const flat = options.flat(2);
  const { pictures, boxes } = images(line, flat);
  return { line, options, pictures, boxes, count: flat.length };
}

/** The plan's reading from the probabilities of its pictures (rows of `labels.length`):
 *  [{ label, confidence, box }] left to right. */
export function choose(plan, probs, labels) {
  const k = labels.length;
  const best = (i) => {
    let top = 0;
    for (let j = 1; j < k; j++) if (probs[i * k + j] > probs[i * k + top]) top = j;
    return top;
  };
  const surest = Array.from({ length: plan.count }, (_, i) => Math.log(probs[i * k + best(i)]));
  const chosen = [];
  let at = 0;
  plan.line.digits.forEach((mark, m) => {
    const ways = plan.options[m];
    const expected = digitsIn(plan.line, mark);
    let [pick, pickScore, start] = [0, -Infinity, at];
    const starts = [];
    for (const way of ways) {
      starts.push(start);
      start += way.length;
    }
    ways.forEach((way, w) => {
      let sum = 0;
      for (let i = starts[w]; i < starts[w] + way.length; i++) sum += surest[i];
      const score = sum / way.length - PRIOR * distance(way.length, expected) ** 2;
      if (score > pickScore) [pick, pickScore] = [w, score];
    });
    for (let i = starts[pick]; i < starts[pick] + ways[pick].length; i++) chosen.push(i);
    at = start;
  });
  return chosen.map((i) => ({
    label: labels[best(i)],
    confidence: probs[i * k + best(i)],
    box: plan.boxes[i],
  }));
}

function distance(count, expected) {
  return count === 1 ? Math.max(0, expected - ONE_DIGIT) : count - expected;
}

function findLine(gray, width, height) {
  const { ink, mask, factor } = writing(gray, width, height, READ_SIDE);
  const { labels, count } = label(mask, ink.h, ink.w);
  if (count === 0) throw new ReadError("expected a handwritten number, found no writing");
  const { digits, lineHeight } = groupDigits(labels, count, ink.w, ink.h);
  oneLine(digits);
  if (digits.length > MAX_DIGITS) {
    throw new ReadError(`expected a number of at most ${MAX_DIGITS} digits, found ${digits.length} marks`);
  }
  return { ink, labels, factor, digits, height: lineHeight };
}

function mark(top, left, bottom, right, strokes) {
  return { top, left, bottom, right, strokes, width: right - left + 1, height: bottom - top + 1 };
}

function take(d, s) {
  Object.assign(d, mark(Math.min(d.top, s.top), Math.min(d.left, s.left), Math.max(d.bottom, s.bottom),
    Math.max(d.right, s.right), [...d.strokes, ...s.strokes]));
}

function groupDigits(labels, count, w, h) {
  const area = new Float64Array(count);
  const box = Array.from({ length: count }, () => [h, w, 0, 0]);
  for (let i = 0; i < labels.length; i++) {
    const g = labels[i] - 1;
    if (g < 0) continue;
    const [y, x] = [Math.floor(i / w), i % w];
    area[g]++;
    const b = box[g];
    [b[0], b[1], b[2], b[3]] = [Math.min(b[0], y), Math.min(b[1], x), Math.max(b[2], y), Math.max(b[3], x)];
  }
  const heights = box.map((b) => b[2] - b[0] + 1);
  const tallest = Math.max(...heights);
  const line = median(heights.filter((v) => v >= 0.5 * tallest));
  const strokes = [];
  box.forEach((b, g) => {
    const [bh, bw] = [b[2] - b[0] + 1, b[3] - b[1] + 1];
    if (!(bw > UNDERLINE[0] * line && bh < UNDERLINE[1] * bw)) strokes.push(mark(b[0], b[1], b[2], b[3], [g + 1]));
  });
  strokes.sort((a, b) => a.left - b.left); // stable, as Python's sorted
  const digits = [];
  for (const s of strokes) {
    const part = digits.find((d) => oneDigit(d, s, line));
    if (part) take(part, s);
    else digits.push({ ...s, strokes: [...s.strokes] });
  }
  const big = Math.max(...area);
  const kept = digits.filter(
    (d) => d.height >= SPECK * line || d.strokes.reduce((t, g) => t + area[g - 1], 0) >= 0.25 * big,
  );
  return { digits: kept, lineHeight: line };
}

function oneDigit(d, s, line) {
  if (Math.max(d.top, s.top) - Math.min(d.bottom, s.bottom) > GAP * line) return false;
  const overlap = Math.min(d.right, s.right) - Math.max(d.left, s.left) + 1;
  if (overlap >= OVERLAP * Math.min(d.width, s.width)) return true;
  return overlap >= -1 && Math.min(d.height, s.height) < PART * line;
}

function oneLine(digits) {
  if (!digits.length) throw new ReadError("expected a handwritten number, found only specks");
  let [lines, bottom] = [1, null];
  for (const d of [...digits].sort((a, b) => a.top - b.top)) {
    if (bottom !== null && d.top > bottom) lines++;
    bottom = bottom === null ? d.bottom : Math.max(bottom, d.bottom);
  }
  if (lines > 1) throw new ReadError(`expected one line of digits, found ${lines}: read takes one line`);
}

function ownStrokes(line, d) {
  const own = new Uint8Array(d.width * d.height);
  const strokes = new Set(d.strokes);
  for (let y = 0; y < d.height; y++) {
    for (let x = 0; x < d.width; x++) {
      own[y * d.width + x] = strokes.has(line.labels[(d.top + y) * line.ink.w + d.left + x]) ? 1 : 0;
    }
  }
  return own;
}

function readings(line, d) {
  const height = Math.max(d.height, line.height);
  const whole = d.width <= WIDEST * height ? [[d]] : [];
  if (d.width <= WIDE * height) return whole;
  const most = Math.min(MAX_DIGITS, Math.max(2, Math.ceil(d.width / (NARROWEST * height))));
  const own = ownStrokes(line, d);
  const ways = [...whole];
  for (let pieces = 2; pieces <= most; pieces++) ways.push(cut(d, own, pieces));
  return ways;
}

function digitsIn(line, d) {
  return d.width / (DIGIT_ASPECT * Math.max(d.height, line.height));
}

function cut(d, own, pieces) {
  const profile = new Float64Array(d.width);
  for (let y = 0; y < d.height; y++) for (let x = 0; x < d.width; x++) profile[x] += own[y * d.width + x];
  const reach = Math.max(1, roundHalfEven((CUT_WINDOW * d.width) / pieces));
  const cuts = [0];
  for (let i = 1; i < pieces; i++) {
    const even = roundHalfEven((i * d.width) / pieces);
    const [lo, hi] = [Math.max(cuts[cuts.length - 1] + 1, even - reach), Math.min(d.width - 1, even + reach)];
    if (hi >= lo) {
      let at = lo;
      for (let x = lo + 1; x <= hi; x++) if (profile[x] < profile[at]) at = x;
      cuts.push(at);
    } else cuts.push(even);
  }
  cuts.push(d.width);
  const out = [];
  for (let c = 0; c + 1 < cuts.length; c++) {
    const [a, b] = [cuts[c], cuts[c + 1]];
    let [first, last] = [-1, -1];
    for (let y = 0; y < d.height; y++) {
      let any = false;
      for (let x = a; x < b && !any; x++) any = own[y * d.width + x] === 1;
      if (any) {
        if (first < 0) first = y;
        last = y;
      }
    }
    if (first < 0) continue;
    out.push(mark(d.top + first, d.left + a, d.top + last, d.left + b - 1, d.strokes));
  }
  return out;
}

function images(line, digits) {
  const pictures = new Uint8Array(digits.length * 784);
  const boxes = [];
  digits.forEach((d, n) => {
    const own = ownStrokes(line, d);
    const soft = grow(own, d.height, d.width, 1); // the strokes' soft edges, not a neighbour's
    const crop = new Float64Array(d.width * d.height);
    for (let y = 0; y < d.height; y++) {
      for (let x = 0; x < d.width; x++) {
        const i = y * d.width + x;
        crop[i] = soft[i] ? line.ink.data[(d.top + y) * line.ink.w + d.left + x] : 0;
      }
    }
    const stroked = strokeToMnist({ data: crop, w: d.width, h: d.height }, own);
    pictures.set(fit(stroked.data, d.width, d.height), n * 784);
    const f = line.factor;
    boxes.push({ x: d.left * f, y: d.top * f, w: d.width * f, h: d.height * f });
  });
  return { pictures, boxes };
}
