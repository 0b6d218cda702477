// MNIST-style preprocessing, the same steps as runtime/images.py and runtime/ink.py
// (mnist_style), for the page and the Node script. Pure functions over typed arrays: no DOM,
// no Node APIs.
//
// A drawing or image file -> 28x28 uint8, white digit on black: the digit's ink (ink.js),
// cropped, fitted into a 20x20 box with Pillow's Lanczos filter (reimplemented below,
// coefficient for coefficient), then placed so its centre of mass sits at (14, 14).

import { digitInk, median, roundHalfEven } from "./ink.js";

export { roundHalfEven };
export const SIZE = 28; // MNIST's field
const FAST_SIDE = 32; // pictures this small are MNIST-style already: ink against the border
const BOX = 20; // MNIST fitted each digit into a 20x20 box inside the field
const CENTRE = 14.0; // where MNIST's centres of mass sit (row and column)
const INK_THRESHOLD = 0.2; // of the strongest ink: fainter pixels are noise when cropping

export class BlankImageError extends Error {
  constructor() {
    super("expected a digit, found a blank image");
    this.name = "BlankImageError";
  }
}

/** RGBA bytes (width*height*4) -> luminance in [0, 1], as runtime/preprocess.py's _grayscale.
 *  `hasAlpha`: the source had an alpha channel (PNG colour types 4 and 6, or a canvas). */
export function grayscale(rgba, width, height, hasAlpha) {
  const n = width * height;
  const gray = new Float64Array(n);
  let transparent = false;
  if (hasAlpha) {
    for (let i = 0; i < n; i++) if (rgba[4 * i + 3] < 255) transparent = true;
  }
  if (!hasAlpha) {
    // Pillow's RGB -> L: fixed-point ITU-R 601-2 luma, rounded.
    for (let i = 0; i < n; i++) {
      const [r, g, b] = [rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]];
      gray[i] = ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >>> 16) / 255;
    }
    return gray;
  }
  const lum = new Float64Array(n);
  const alpha = new Float64Array(n);
  let opaque = 0;
  let opaqueLum = 0;
  for (let i = 0; i < n; i++) {
    const [r, g, b] = [rgba[4 * i] / 255, rgba[4 * i + 1] / 255, rgba[4 * i + 2] / 255];
    lum[i] = r * 0.299 + g * 0.587 + b * 0.114;
    alpha[i] = rgba[4 * i + 3] / 255;
    if (alpha[i] > 0.5) {
      opaque++;
      opaqueLum += lum[i];
    }
  }
  if (!transparent) return lum;
  // Ink drawn on a transparent sheet: put it on the background it contrasts with.
  const background = opaque > 0 && opaqueLum / opaque > 0.5 ? 0.0 : 1.0;
  for (let i = 0; i < n; i++) gray[i] = lum[i] * alpha[i] + background * (1 - alpha[i]);
  return gray;
}

/** Grayscale digit (row-major, values in [0, 1], either polarity) -> Uint8Array(784). */
export function mnistStyle(gray, pictureWidth, pictureHeight) {
  const found =
    Math.max(pictureWidth, pictureHeight) <= FAST_SIDE
      ? { data: inkStrength(gray, pictureWidth, pictureHeight), w: pictureWidth, h: pictureHeight }
      : digitInk(gray, pictureWidth, pictureHeight);
  return fit(found.data, found.w, found.h);
}

/** Ink strength (row-major, [0, 1]) -> Uint8Array(784): the ink's box fitted into 20x20 and
 *  centred by its mass, as MNIST was made (runtime/ink.py fit). */
export function fit(ink, width, height) {
  let peak = 0;
  for (const v of ink) peak = Math.max(peak, v);
  let [top, bottom, left, right] = [height, -1, width, -1];
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) {
      if (peak > 0 && ink[y * width + x] > INK_THRESHOLD * peak) {
        top = Math.min(top, y);
        bottom = Math.max(bottom, y);
        left = Math.min(left, x);
        right = Math.max(right, x);
      }
    }
  }
  if (bottom < 0) throw new BlankImageError();
  const [h, w] = [bottom - top + 1, right - left + 1];
  const crop = new Float32Array(h * w); // Pillow resizes a float32 ("F") image
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) crop[y * w + x] = ink[(top + y) * width + left + x];
  }
  const scale = BOX / Math.max(h, w);
  const [newW, newH] = [Math.max(1, roundHalfEven(w * scale)), Math.max(1, roundHalfEven(h * scale))];
  const boxed = resizeLanczos(crop, w, h, newW, newH).map((v) => Math.min(Math.max(v, 0), 1));
  return centreByMass(boxed, newW, newH);
}

/** Ink strength in [0, 1] (1 = strongest), the background judged from the border's median. */
function inkStrength(gray, width, height) {
  const border = [];
  for (let x = 0; x < width; x++) border.push(gray[x], gray[(height - 1) * width + x]);
  for (let y = 0; y < height; y++) border.push(gray[y * width], gray[y * width + width - 1]);
  const background = median(border);
  const ink = new Float64Array(gray.length);
  let peak = 0;
  for (let i = 0; i < gray.length; i++) {
    const v = background > 0.5 ? background - gray[i] : gray[i] - background;
    ink[i] = Math.max(v, 0);
    peak = Math.max(peak, ink[i]);
  }
  if (peak > 0) for (let i = 0; i < ink.length; i++) ink[i] /= peak;
  return ink;
}

function centreByMass(boxed, w, h) {
  let [mass, my, mx] = [0, 0, 0];
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const v = boxed[y * w + x];
      mass += v;
      my += y * v;
      mx += x * v;
    }
  }
  const clamp = (v, hi) => Math.min(Math.max(v, 0), hi);
  const top = clamp(roundHalfEven(CENTRE - my / mass), SIZE - h); // keep the whole digit in
  const left = clamp(roundHalfEven(CENTRE - mx / mass), SIZE - w);
  const field = new Uint8Array(SIZE * SIZE);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      field[(top + y) * SIZE + left + x] = roundHalfEven(boxed[y * w + x] * 255);
    }
  }
  return field;
}

/** Pillow's Image.resize(..., LANCZOS) on a float32 image: two separable passes, horizontal
 *  first, double-precision sums stored as float32 (Pillow's Resample.c, 32bpc path). */
export function resizeLanczos(src, w, h, newW, newH) {
  let out = src;
  if (newW !== w) {
    const { bounds, weights, ksize } = coefficients(w, newW);
    const tmp = new Float32Array(newW * h);
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < newW; x++) {
        const [first, count] = [bounds[2 * x], bounds[2 * x + 1]];
        let sum = 0;
        for (let i = 0; i < count; i++) sum += out[y * w + first + i] * weights[x * ksize + i];
        tmp[y * newW + x] = sum;
      }
    }
    out = tmp;
  }
  if (newH !== h) {
    const { bounds, weights, ksize } = coefficients(h, newH);
    const tmp = new Float32Array(newW * newH);
    for (let y = 0; y < newH; y++) {
      const [first, count] = [bounds[2 * y], bounds[2 * y + 1]];
      for (let x = 0; x < newW; x++) {
        let sum = 0;
        for (let i = 0; i < count; i++) sum += out[(first + i) * newW + x] * weights[y * ksize + i];
        tmp[y * newW + x] = sum;
      }
    }
    out = tmp;
  }
  return Float32Array.from(out);
}

const LANCZOS_SUPPORT = 3.0;

function lanczos(x) {
  const sinc = (t) => (t === 0 ? 1 : Math.sin(Math.PI * t) / (Math.PI * t));
  return x >= -LANCZOS_SUPPORT && x < LANCZOS_SUPPORT ? sinc(x) * sinc(x / 3) : 0;
}

function coefficients(inSize, outSize) {
  const scale = inSize / outSize;
  const filterScale = Math.max(scale, 1);
  const support = LANCZOS_SUPPORT * filterScale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(2 * outSize);
  const weights = new Float64Array(outSize * ksize);
  const inverse = 1.0 / filterScale; // Pillow multiplies by this rather than divide
  for (let xx = 0; xx < outSize; xx++) {
    const centre = (xx + 0.5) * scale;
    const first = Math.max(Math.trunc(centre - support + 0.5), 0);
    const count = Math.min(Math.trunc(centre + support + 0.5), inSize) - first;
    let total = 0;
    for (let i = 0; i < count; i++) {
      const k = lanczos((i + first - centre + 0.5) * inverse);
      weights[xx * ksize + i] = k;
      total += k;
    }
    if (total !== 0) for (let i = 0; i < count; i++) weights[xx * ksize + i] /= total;
    bounds[2 * xx] = first;
    bounds[2 * xx + 1] = count;
  }
  return { bounds, weights, ksize };
}
