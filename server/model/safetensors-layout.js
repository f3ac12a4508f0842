// The safetensors layout, written once for both writers: the server's file writer (server/model/safetensors.ts, which
// streams large tensors in chunks) and the dashboard's download (server/dashboard/static/safetensors.js, in memory).
// An 8-byte little-endian header length, the JSON header padded with spaces to a multiple of 8 bytes (so the data
// starts aligned), then each tensor's little-endian values in header order.
//
// Plain JavaScript with JSDoc types and no imports, so the browser loads this very file: the dashboard serves it at
// /model/safetensors-layout.js, which is where the page's relative import lands.

/**
 * @typedef {object} TensorLayout
 * @property {string} name
 * @property {readonly number[]} shape
 * @property {'F32' | 'F16'} [dtype] element type on disk; F32 when absent
 */

/**
 * Encode the length prefix and the header of `tensors` with string `metadata`; throws an Error that names the
 * offending tensor or metadata key.
 * @param {readonly TensorLayout[]} tensors
 * @param {Record<string, string>} [metadata]
 * @returns {{ bytes: Uint8Array, dataBytes: number }} the prefix and header, and the size of the data after them
 */
export function safetensorsHeader(tensors, metadata) {
  /** @type {Record<string, unknown>} */
  const header = {};
  if (metadata !== undefined) {
    for (const [key, value] of Object.entries(metadata)) {
      if (typeof value !== 'string') throw new Error(`metadata ${key} is ${JSON.stringify(value)}; values must be strings`);
    }
    header.__metadata__ = { ...metadata };
  }
  let offset = 0;
  for (const tensor of tensors) {
    const dtype = tensor.dtype ?? 'F32';
    if (dtype !== 'F32' && dtype !== 'F16') {
      throw new Error(`tensor ${tensor.name} has dtype ${String(dtype)}; the writer supports F32, F16`);
    }
    if (tensor.name === '' || tensor.name === '__metadata__' || Object.hasOwn(header, tensor.name)) {
      throw new Error(`tensor name ${JSON.stringify(tensor.name)} is empty, reserved or repeated`);
    }
    if (!tensor.shape.every((d) => Number.isInteger(d) && d >= 0)) {
      throw new Error(`tensor ${tensor.name} has shape ${JSON.stringify(tensor.shape)}; expected integers >= 0`);
    }
    const byteLength = elementCount(tensor.shape) * (dtype === 'F32' ? 4 : 2);
    header[tensor.name] = { dtype, shape: [...tensor.shape], data_offsets: [offset, offset + byteLength] };
    offset += byteLength;
  }
  const encoder = new TextEncoder();
  const json = JSON.stringify(header);
  const headerBytes = encoder.encode(json + ' '.repeat((8 - (encoder.encode(json).length % 8)) % 8));
  const bytes = new Uint8Array(8 + headerBytes.length);
  new DataView(bytes.buffer).setBigUint64(0, BigInt(headerBytes.length), true);
  bytes.set(headerBytes, 8);
  return { bytes, dataBytes: offset };
}

/**
 * Throw unless `count` values fill the shape of `tensor`.
 * @param {TensorLayout} tensor
 * @param {number} count
 */
export function checkValueCount(tensor, count) {
  const expected = elementCount(tensor.shape);
  if (count !== expected) {
    throw new Error(`tensor ${tensor.name} has ${count} values; shape [${tensor.shape.join(', ')}] needs ${expected}`);
  }
}

/**
 * Write `values[start, end)` into `view` from byte `at`, in the tensor's dtype; returns the byte after the last.
 * @param {DataView} view
 * @param {number} at
 * @param {ArrayLike<number>} values
 * @param {number} start
 * @param {number} end
 * @param {'F32' | 'F16'} [dtype]
 * @returns {number}
 */
export function encodeValues(view, at, values, start, end, dtype) {
  if ((dtype ?? 'F32') === 'F32') {
    for (let i = start; i < end; i++, at += 4) view.setFloat32(at, Number(values[i]), true); // JSON may give "NaN"
  } else {
    for (let i = start; i < end; i++, at += 2) view.setUint16(at, f32ToF16Bits(Number(values[i])), true);
  }
  return at;
}

/**
 * Encode whole tensors ({name, shape, values, dtype?}) with string metadata into one buffer.
 * @param {readonly (TensorLayout & { values: ArrayLike<number> })[]} tensors
 * @param {Record<string, string>} [metadata]
 * @returns {Uint8Array}
 */
export function encodeSafetensors(tensors, metadata) {
  for (const t of tensors) checkValueCount(t, t.values.length);
  const { bytes, dataBytes } = safetensorsHeader(tensors, metadata);
  const out = new Uint8Array(bytes.length + dataBytes);
  out.set(bytes, 0);
  const view = new DataView(out.buffer);
  let at = bytes.length;
  for (const t of tensors) at = encodeValues(view, at, t.values, 0, t.values.length, t.dtype);
  return out;
}

/**
 * Round a number to the nearest binary16 (ties to even) and return its bits; overflow gives infinity.
 * @param {number} value
 * @returns {number}
 */
export function f32ToF16Bits(value) {
  scratchF32[0] = value; // first round to float32, as the tensor data already is
  const x = scratchU32[0];
  const sign = (x >>> 16) & 0x8000;
  const exponent = (x >>> 23) & 0xff;
  const mantissa = x & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa !== 0 ? 0x200 : 0);
  const halfExponent = exponent - 127 + 15;
  if (halfExponent >= 0x1f) return sign | 0x7c00;
  if (halfExponent <= 0) {
    // Below 2^-25 even the smallest subnormal (2^-24) is more than twice as far as zero.
    if (halfExponent < -10) return sign;
    const full = mantissa | 0x800000; // restore the implicit leading 1
    const shift = 14 - halfExponent; // subnormal value = full x 2^(exponent-150) = bits x 2^-24
    const bits = full >>> shift;
    const rest = full & ((1 << shift) - 1);
    const half = 1 << (shift - 1);
    // A carry out of the subnormal range yields 0x400, which is exactly the smallest normal's encoding.
    return sign | (rest > half || (rest === half && (bits & 1) === 1) ? bits + 1 : bits);
  }
  const bits = (halfExponent << 10) | (mantissa >>> 13);
  const rest = mantissa & 0x1fff;
  // A carry out of the mantissa bumps the exponent, and past the largest finite value lands on infinity (0x7c00).
  return sign | (rest > 0x1000 || (rest === 0x1000 && (bits & 1) === 1) ? bits + 1 : bits);
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/**
 * @param {readonly number[]} shape
 * @returns {number}
 */
function elementCount(shape) {
  return shape.reduce((a, b) => a * b, 1);
}
