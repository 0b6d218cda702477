// Feed an mnist-edge model and read its answer, for onnxruntime-web and onnxruntime-node alike
// (the caller passes its `ort`). The contract is read off the model's input, as the Python
// runtime reads it for a model without metadata: uint8 input takes pixels 0-255, float input
// takes pixels / 255; the layout follows the input's shape.

const SCALE = Math.fround(1 / 255); // float32, as numpy multiplies: the same bits as Python

const LAYOUTS = {
  NHWC: [28, 28, 1],
  NCHW: [1, 28, 28],
  NHW: [28, 28],
  NF: [784],
};

/** The input's name, element type and per-image shape; throws if it is not an MNIST input. */
export function readContract(session) {
  const input = session.inputMetadata[0];
  const output = session.outputMetadata[0];
  const image = input.shape.slice(1);
  const fits = (expected) =>
    image.length === expected.length && image.every((d, i) => typeof d !== "number" || d === expected[i]);
  const layout = Object.keys(LAYOUTS).find((name) => fits(LAYOUTS[name]));
  if (!layout) {
    throw new Error(
      `input '${input.name}': expected an MNIST image input such as [N, 28, 28, 1], found [${input.shape}]`,
    );
  }
  if (input.type !== "uint8" && input.type !== "float32") {
    throw new Error(`input '${input.name}': expected float32 or uint8, found ${input.type}`);
  }
  return { input: input.name, output: output.name, type: input.type, imageShape: LAYOUTS[layout] };
}

/** pixels: Uint8Array of n*784 MNIST-style pixels -> n rows of 10 probabilities. */
export async function classify(ort, session, contract, pixels, n) {
  const data = contract.type === "uint8" ? pixels : scaled(pixels, SCALE);
  const tensor = new ort.Tensor(contract.type, data, [n, ...contract.imageShape]);
  const result = await session.run({ [contract.input]: tensor });
  const scores = result[contract.output].data;
  return Array.from({ length: n }, (_, i) => scores.slice(10 * i, 10 * i + 10));
}

/** pixels * scale as float32. A loop: Float32Array.from(pixels, map) walks an iterator and
 *  took 30 ms for 256 images in V8, more than the model's own time. */
export function scaled(pixels, scale) {
  const out = new Float32Array(pixels.length);
  for (let i = 0; i < pixels.length; i++) out[i] = pixels[i] * scale;
  return out;
}

export function argmax(row) {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i] > row[best]) best = i;
  return best;
}
