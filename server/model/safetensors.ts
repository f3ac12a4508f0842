// Read and write the safetensors format: an 8-byte little-endian u64 header length N, N bytes of JSON
// (name -> {dtype, shape, data_offsets: [begin, end]}, offsets relative to the data region, plus an optional
// `__metadata__` of strings), then the data region. Spec: https://github.com/huggingface/safetensors
import { closeSync, fstatSync, openSync, readSync, renameSync, rmSync, writeSync } from 'node:fs';
import { checkValueCount, encodeValues, f32ToF16Bits, safetensorsHeader } from './safetensors-layout.js';

export { f32ToF16Bits };

/** Report a checkpoint or safetensors file that cannot be read, or a tensor that cannot be written. */
export class CheckpointError extends Error {
  override name = 'CheckpointError';
}

/** Name a safetensors element type: the three float types this project converts, or any other the file declares. */
export type SafetensorsDtype = 'F32' | 'F16' | 'BF16' | (string & {});

/** Describe one tensor of a safetensors file: where its bytes lie, so they can be read on demand. */
export interface SafetensorsTensorInfo {
  name: string;
  dtype: SafetensorsDtype;
  shape: number[];
  /** Absolute path of the file holding the tensor. */
  file: string;
  /** Offset of the first byte, from the start of the file (not of the data region). */
  byteOffset: number;
  byteLength: number;
}

/** Describe a parsed safetensors header. */
export interface SafetensorsHeader {
  file: string;
  fileSize: number;
  /** Offset of the data region from the start of the file: 8 + header length. */
  dataOffset: number;
  metadata: Record<string, string>;
  /** Tensors in header order. */
  tensors: SafetensorsTensorInfo[];
}

/** Describe one tensor to write; `data` may be a function so large tensors exist only while being written. */
export interface SafetensorsWriteTensor {
  name: string;
  shape: readonly number[];
  data: Float32Array | (() => Float32Array);
  /** Element type on disk; 'F32' when absent. */
  dtype?: 'F32' | 'F16';
}

const headerLengthBytes = 8; // the u64 before the JSON
const maxHeaderBytes = 100_000_000; // the limit the reference implementation enforces
const ioChunkBytes = 4 << 20; // bytes per read or write call, so no call needs a giant buffer

const dtypeBytes: Readonly<Record<string, number>> = Object.freeze({
  BOOL: 1, U8: 1, I8: 1, F8_E4M3: 1, F8_E5M2: 1,
  U16: 2, I16: 2, F16: 2, BF16: 2,
  U32: 4, I32: 4, F32: 4,
  U64: 8, I64: 8, F64: 8,
});

/** Return the bytes per element of a safetensors dtype, or undefined for a dtype this module does not know. */
export function safetensorsDtypeBytes(dtype: string): number | undefined {
  return Object.hasOwn(dtypeBytes, dtype) ? dtypeBytes[dtype] : undefined;
}

/** Parse the header of a safetensors file and check every tensor's extent against its shape and the file size. */
export function readSafetensorsHeader(file: string): SafetensorsHeader {
  const fd = openOrThrow(file, 'r', 'read safetensors header');
  try {
    const fileSize = fstatSync(fd).size;
    if (fileSize < headerLengthBytes) {
      throw new CheckpointError(
        `read safetensors header of ${file}: file is ${fileSize} bytes; a safetensors file needs at least ` +
          `${headerLengthBytes} (the header length)`,
      );
    }
    const lengthBuffer = Buffer.alloc(headerLengthBytes);
    readFully(fd, lengthBuffer, 0, file, 'header length');
    const headerLength = lengthBuffer.readBigUInt64LE(0);
    const room = BigInt(fileSize - headerLengthBytes);
    if (headerLength > BigInt(maxHeaderBytes) || headerLength > room) {
      throw new CheckpointError(
        `read safetensors header of ${file}: header length is ${headerLength} bytes; the file leaves room for ` +
          `${room} and the format allows at most ${maxHeaderBytes} (not a safetensors file, or truncated)`,
      );
    }
    const headerBuffer = Buffer.alloc(Number(headerLength));
    readFully(fd, headerBuffer, headerLengthBytes, file, 'header');
    const dataOffset = headerLengthBytes + headerBuffer.length;
    return parseHeader(file, headerBuffer, fileSize, dataOffset);
  } finally {
    closeSync(fd);
  }
}

function parseHeader(file: string, headerBuffer: Buffer, fileSize: number, dataOffset: number): SafetensorsHeader {
  let json: unknown;
  try {
    json = JSON.parse(headerBuffer.toString('utf8'));
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CheckpointError(
      `read safetensors header of ${file}: the ${headerBuffer.length}-byte header is not JSON (${reason})`,
    );
  }
  if (!isPlainObject(json)) {
    throw new CheckpointError(`read safetensors header of ${file}: the header is JSON but not an object`);
  }
  const metadata: Record<string, string> = {};
  const tensors: SafetensorsTensorInfo[] = [];
  for (const [name, entry] of Object.entries(json)) {
    if (name === '__metadata__') {
      if (!isPlainObject(entry)) {
        throw new CheckpointError(`read safetensors header of ${file}: __metadata__ is not an object of strings`);
      }
      for (const [key, value] of Object.entries(entry)) {
        if (typeof value !== 'string') {
          throw new CheckpointError(
            `read safetensors header of ${file}: __metadata__.${key} is ${JSON.stringify(value)}; values must be strings`,
          );
        }
        metadata[key] = value;
      }
      continue;
    }
    tensors.push(parseTensorEntry(file, name, entry, fileSize, dataOffset));
  }
  return { file, fileSize, dataOffset, metadata, tensors };
}

function parseTensorEntry(
  file: string,
  name: string,
  entry: unknown,
  fileSize: number,
  dataOffset: number,
): SafetensorsTensorInfo {
  const where = `read safetensors header of ${file}: tensor ${name}`;
  if (!isPlainObject(entry)) {
    throw new CheckpointError(`${where} is ${JSON.stringify(entry)}; expected {dtype, shape, data_offsets}`);
  }
  const { dtype, shape, data_offsets: offsets } = entry;
  if (typeof dtype !== 'string') {
    throw new CheckpointError(`${where} has dtype ${JSON.stringify(dtype)}; expected a string such as "F32"`);
  }
  if (!Array.isArray(shape) || !shape.every(isNonNegativeInteger)) {
    throw new CheckpointError(`${where} has shape ${JSON.stringify(shape)}; expected an array of integers >= 0`);
  }
  if (
    !Array.isArray(offsets) ||
    offsets.length !== 2 ||
    !offsets.every(isNonNegativeInteger) ||
    offsets[0] > offsets[1]
  ) {
    throw new CheckpointError(
      `${where} has data_offsets ${JSON.stringify(offsets)}; expected [begin, end] with 0 <= begin <= end`,
    );
  }
  const [begin, end] = offsets as [number, number];
  const dataBytes = fileSize - dataOffset;
  if (end > dataBytes) {
    throw new CheckpointError(
      `${where} ends at byte ${end} of the data region, which holds ${dataBytes} bytes ` +
        `(file is ${fileSize} bytes; truncated or corrupt)`,
    );
  }
  const byteLength = end - begin;
  const elementBytes = safetensorsDtypeBytes(dtype);
  if (elementBytes !== undefined) {
    const expected = product(shape) * elementBytes;
    if (byteLength !== expected) {
      throw new CheckpointError(
        `${where} spans ${byteLength} bytes; shape [${shape.join(', ')}] of ${dtype} needs ${expected}`,
      );
    }
  }
  return { name, dtype, shape: [...shape], file, byteOffset: dataOffset + begin, byteLength };
}

/** Read one tensor's data as float32, converting F16 and BF16; other dtypes are refused. */
export function readTensorFloat32(tensor: SafetensorsTensorInfo): Float32Array {
  const { file, name, dtype, byteLength } = tensor;
  const elementBytes = dtype === 'F32' ? 4 : dtype === 'F16' || dtype === 'BF16' ? 2 : undefined;
  if (elementBytes === undefined) {
    throw new CheckpointError(
      `read tensor ${name} from ${file}: dtype ${dtype} cannot be read as float32; supported: F32, F16, BF16`,
    );
  }
  if (byteLength % elementBytes !== 0) {
    throw new CheckpointError(
      `read tensor ${name} from ${file}: ${byteLength} bytes is not a whole number of ${dtype} elements`,
    );
  }
  const count = byteLength / elementBytes;
  const fd = openOrThrow(file, 'r', `read tensor ${name}`);
  try {
    if (dtype === 'F32') {
      const out = new Float32Array(count);
      readFully(fd, new Uint8Array(out.buffer), tensor.byteOffset, file, `tensor ${name}`);
      if (!hostIsLittleEndian) swapBytes(new Uint8Array(out.buffer), 4);
      return out;
    }
    const halves = new Uint16Array(count);
    readFully(fd, new Uint8Array(halves.buffer), tensor.byteOffset, file, `tensor ${name}`);
    if (!hostIsLittleEndian) swapBytes(new Uint8Array(halves.buffer), 2);
    return dtype === 'F16' ? f16ArrayToF32(halves) : bf16ArrayToF32(halves);
  } finally {
    closeSync(fd);
  }
}

/**
 * Write F32 or F16 tensors to a safetensors file, in chunks of a few MiB so a 500 MB file never sits in one buffer.
 * The layout (header, padding, data) is safetensors-layout.js's, the one the dashboard's download uses too. The file
 * appears under its name only once complete (written beside it, then renamed).
 */
export function writeSafetensors(
  path: string,
  tensors: readonly SafetensorsWriteTensor[],
  metadata?: Record<string, string>,
): void {
  const op = `write safetensors ${path}`;
  const layoutError = (error: unknown) => new CheckpointError(`${op}: ${error instanceof Error ? error.message : String(error)}`);
  let header: Uint8Array;
  try {
    header = safetensorsHeader(tensors, metadata).bytes;
  } catch (error: unknown) {
    throw layoutError(error);
  }
  const partial = `${path}.partial-${process.pid}`;
  const fd = openOrThrow(partial, 'w', op);
  let done = false;
  try {
    writeFully(fd, header, partial);
    const chunk = new Uint8Array(ioChunkBytes);
    const view = new DataView(chunk.buffer);
    for (const tensor of tensors) {
      const data = typeof tensor.data === 'function' ? tensor.data() : tensor.data;
      if (!(data instanceof Float32Array)) throw new CheckpointError(`${op}: tensor ${tensor.name} has no Float32Array`);
      try {
        checkValueCount(tensor, data.length);
      } catch (error: unknown) {
        throw layoutError(error);
      }
      const perChunk = ioChunkBytes / ((tensor.dtype ?? 'F32') === 'F32' ? 4 : 2);
      for (let start = 0; start < data.length; start += perChunk) {
        const end = Math.min(start + perChunk, data.length);
        writeFully(fd, chunk.subarray(0, encodeValues(view, 0, data, start, end, tensor.dtype)), partial);
      }
    }
    done = true;
  } finally {
    closeSync(fd);
    if (!done) rmSync(partial, { force: true });
  }
  renameSync(partial, path);
}

/** Convert IEEE 754 half-precision bits (binary16) to the number they encode. */
export function f16BitsToF32(bits: number): number {
  const sign = bits & 0x8000 ? -1 : 1;
  const exponent = (bits >> 10) & 0x1f;
  const fraction = bits & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24; // zero and subnormals: 0.fraction x 2^-14
  if (exponent === 0x1f) return fraction === 0 ? sign * Infinity : NaN;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

/** Convert bfloat16 bits (the top half of a float32) to the number they encode. */
export function bf16BitsToF32(bits: number): number {
  scratchU32[0] = (bits & 0xffff) << 16;
  return scratchF32[0];
}

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);
const hostIsLittleEndian = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;
let f16Table: Float32Array | undefined; // all 65536 half values, built on first use (256 KiB)

function f16ArrayToF32(halves: Uint16Array): Float32Array {
  if (f16Table === undefined) {
    f16Table = new Float32Array(0x10000);
    for (let bits = 0; bits < 0x10000; bits++) f16Table[bits] = f16BitsToF32(bits);
  }
  const table = f16Table;
  const out = new Float32Array(halves.length);
  for (let i = 0; i < halves.length; i++) out[i] = table[halves[i]];
  return out;
}

function bf16ArrayToF32(halves: Uint16Array): Float32Array {
  const out = new Float32Array(halves.length);
  const words = new Uint32Array(out.buffer);
  for (let i = 0; i < halves.length; i++) words[i] = halves[i] << 16;
  return out;
}

function swapBytes(bytes: Uint8Array, width: number): void {
  for (let i = 0; i < bytes.length; i += width) bytes.subarray(i, i + width).reverse();
}

function openOrThrow(file: string, flags: 'r' | 'w', op: string): number {
  try {
    return openSync(file, flags);
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error);
    throw new CheckpointError(`${op}: cannot open ${file} (${reason})`);
  }
}

function readFully(fd: number, target: Uint8Array, position: number, file: string, what: string): void {
  let done = 0;
  while (done < target.length) {
    const length = Math.min(ioChunkBytes, target.length - done);
    const got = readSync(fd, target, done, length, position + done);
    if (got === 0) {
      throw new CheckpointError(
        `read ${what} from ${file}: file ended after ${done} of ${target.length} bytes at offset ${position} ` +
          `(truncated since the header was read?)`,
      );
    }
    done += got;
  }
}

function writeFully(fd: number, source: Uint8Array, file: string): void {
  let done = 0;
  while (done < source.length) {
    const wrote = writeSync(fd, source, done, source.length - done);
    if (wrote <= 0) throw new CheckpointError(`write safetensors ${file}: write returned ${wrote}`);
    done += wrote;
  }
}

function product(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

function isNonNegativeInteger(value: unknown): value is number {
  return typeof value === 'number' && Number.isSafeInteger(value) && value >= 0;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}
