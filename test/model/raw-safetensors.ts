// Test helpers: write safetensors files byte by byte, including malformed ones the real writer refuses to make.
import { writeFileSync } from 'node:fs';

/** Describe one tensor of a hand-built safetensors file. */
export interface RawTensor {
  name: string;
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
  /** Override the data_offsets the header declares (they default to the tensor's real extent). */
  dataOffsets?: [number, number];
}

/** Build the bytes of a safetensors file, with an optional header override for corrupt-file tests. */
export function rawSafetensorsBytes(tensors: RawTensor[], headerOverride?: string): Buffer {
  const header: Record<string, unknown> = { __metadata__: { format: 'pt' } };
  let offset = 0;
  for (const t of tensors) {
    header[t.name] = {
      dtype: t.dtype,
      shape: t.shape,
      data_offsets: t.dataOffsets ?? [offset, offset + t.bytes.length],
    };
    offset += t.bytes.length;
  }
  const headerBytes = Buffer.from(headerOverride ?? JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(headerBytes.length), 0);
  return Buffer.concat([length, headerBytes, ...tensors.map((t) => Buffer.from(t.bytes))]);
}

/** Write a hand-built safetensors file. */
export function writeRawSafetensors(path: string, tensors: RawTensor[], headerOverride?: string): void {
  writeFileSync(path, rawSafetensorsBytes(tensors, headerOverride));
}

/** Encode float32 values little-endian. */
export function f32Bytes(values: ArrayLike<number>): Uint8Array {
  const buffer = Buffer.alloc(values.length * 4);
  for (let i = 0; i < values.length; i++) buffer.writeFloatLE(values[i], i * 4);
  return buffer;
}

/** Encode 16-bit patterns (F16 or BF16 bits) little-endian. */
export function u16Bytes(bits: ArrayLike<number>): Uint8Array {
  const buffer = Buffer.alloc(bits.length * 2);
  for (let i = 0; i < bits.length; i++) buffer.writeUInt16LE(bits[i], i * 2);
  return buffer;
}

/** Return the error a function throws, failing when it does not throw. */
export function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (error) {
    if (error instanceof Error) return error;
    throw new Error(`expected an Error, got ${String(error)}`);
  }
  throw new Error('expected the call to throw');
}
