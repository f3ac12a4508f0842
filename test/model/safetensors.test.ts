import { mkdtempSync, readdirSync, readFileSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import {
  bf16BitsToF32,
  CheckpointError,
  f16BitsToF32,
  f32ToF16Bits,
  readSafetensorsHeader,
  readTensorFloat32,
  writeSafetensors,
} from '../../server/model/safetensors.js';
import { f32Bytes, thrown, u16Bytes, writeRawSafetensors } from './raw-safetensors.js';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'recite-safetensors-'));
});
afterAll(() => {
  rmSync(dir, { recursive: true, force: true });
});

function expectCheckpointError(fn: () => unknown, ...parts: string[]): Error {
  const error = thrown(fn);
  expect(error).toBeInstanceOf(CheckpointError);
  expect(error.name).toBe('CheckpointError');
  for (const part of parts) expect(error.message).toContain(part);
  return error;
}

function ramp(n: number, scale = 1): Float32Array {
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = Math.fround(Math.sin(i * 0.37) * scale);
  return out;
}

describe('f16 and bf16 conversion', () => {
  it('converts known half-precision bit patterns', () => {
    expect(f16BitsToF32(0x3c00)).toBe(1);
    expect(f16BitsToF32(0xc000)).toBe(-2);
    expect(f16BitsToF32(0x3800)).toBe(0.5);
    expect(f16BitsToF32(0x7bff)).toBe(65504); // largest finite half
    expect(f16BitsToF32(0x0400)).toBe(2 ** -14); // smallest normal
    expect(f16BitsToF32(0x0001)).toBe(2 ** -24); // smallest subnormal
    expect(f16BitsToF32(0x03ff)).toBe(1023 * 2 ** -24); // largest subnormal
    expect(f16BitsToF32(0x8001)).toBe(-(2 ** -24));
    expect(f16BitsToF32(0x3555)).toBe(0.333251953125);
    expect(f16BitsToF32(0x7c00)).toBe(Infinity);
    expect(f16BitsToF32(0xfc00)).toBe(-Infinity);
    expect(f16BitsToF32(0x7e00)).toBeNaN();
    expect(Object.is(f16BitsToF32(0x8000), -0)).toBe(true);
    expect(Object.is(f16BitsToF32(0x0000), 0)).toBe(true);
  });

  it('converts known bfloat16 bit patterns', () => {
    expect(bf16BitsToF32(0x3f80)).toBe(1);
    expect(bf16BitsToF32(0xc000)).toBe(-2);
    expect(bf16BitsToF32(0x3f00)).toBe(0.5);
    expect(bf16BitsToF32(0x4049)).toBe(3.140625);
    expect(bf16BitsToF32(0x477f)).toBe(65280);
    expect(bf16BitsToF32(0x0001)).toBe(2 ** -133); // float32 subnormal
    expect(bf16BitsToF32(0x0080)).toBe(2 ** -126); // smallest normal
    expect(bf16BitsToF32(0x7f80)).toBe(Infinity);
    expect(bf16BitsToF32(0xff80)).toBe(-Infinity);
    expect(bf16BitsToF32(0x7fc0)).toBeNaN();
    expect(Object.is(bf16BitsToF32(0x8000), -0)).toBe(true);
  });

  it('rounds float32 to half with ties to even, overflow to infinity and underflow to zero', () => {
    expect(f32ToF16Bits(1)).toBe(0x3c00);
    expect(f32ToF16Bits(-2)).toBe(0xc000);
    expect(f32ToF16Bits(65504)).toBe(0x7bff);
    expect(f32ToF16Bits(65519)).toBe(0x7bff); // below the midpoint to 65536
    expect(f32ToF16Bits(65520)).toBe(0x7c00); // the midpoint rounds to even, which is infinity
    expect(f32ToF16Bits(1e6)).toBe(0x7c00);
    expect(f32ToF16Bits(-1e6)).toBe(0xfc00);
    expect(f32ToF16Bits(1 + 2 ** -11)).toBe(0x3c00); // tie, even mantissa stays
    expect(f32ToF16Bits(1 + 3 * 2 ** -11)).toBe(0x3c02); // tie, odd mantissa rounds up
    expect(f32ToF16Bits(1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01); // just above the tie
    expect(f32ToF16Bits(2 ** -24)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -25)).toBe(0x0000); // tie between 0 and the smallest subnormal
    expect(f32ToF16Bits(3 * 2 ** -26)).toBe(0x0001);
    expect(f32ToF16Bits(2 ** -30)).toBe(0x0000);
    expect(f32ToF16Bits(1023.5 * 2 ** -24)).toBe(0x0400); // largest subnormal rounds up to smallest normal
    expect(f32ToF16Bits(-0)).toBe(0x8000);
    expect(f32ToF16Bits(Infinity)).toBe(0x7c00);
    expect(f16BitsToF32(f32ToF16Bits(Number.NaN))).toBeNaN();
  });

  it('round-trips every non-NaN half value', () => {
    for (let bits = 0; bits < 0x10000; bits++) {
      const value = f16BitsToF32(bits);
      if (Number.isNaN(value)) continue;
      if (f32ToF16Bits(value) !== bits) expect(f32ToF16Bits(value), `bits 0x${bits.toString(16)}`).toBe(bits);
    }
  });
});

describe('writeSafetensors and readSafetensorsHeader', () => {
  it('round-trips F32 tensors, metadata and shapes, with an 8-aligned data region', () => {
    const file = join(dir, 'round-trip-f32.safetensors');
    const a = ramp(6);
    const b = ramp(35, 3);
    const scalar = new Float32Array([42.5]);
    writeSafetensors(
      file,
      [
        { name: 'a', shape: [2, 3], data: a },
        { name: 'layer.b', shape: [5, 7], data: () => b },
        { name: 'scalar', shape: [], data: scalar },
        { name: 'empty', shape: [0, 4], data: new Float32Array(0) },
      ],
      { format: 'pt', note: 'hello' },
    );
    const header = readSafetensorsHeader(file);
    expect(header.file).toBe(file);
    expect(header.metadata).toEqual({ format: 'pt', note: 'hello' });
    expect(header.dataOffset % 8).toBe(0);
    const raw = readFileSync(file);
    expect(Number(raw.readBigUInt64LE(0)) % 8).toBe(0);
    expect(raw.subarray(8, header.dataOffset).toString('utf8')).toMatch(/^\{.*\} *$/);
    expect(header.tensors.map((t) => [t.name, t.dtype, t.shape, t.byteLength])).toEqual([
      ['a', 'F32', [2, 3], 24],
      ['layer.b', 'F32', [5, 7], 140],
      ['scalar', 'F32', [], 4],
      ['empty', 'F32', [0, 4], 0],
    ]);
    expect(header.tensors[0].byteOffset).toBe(header.dataOffset);
    expect(header.tensors[1].byteOffset).toBe(header.dataOffset + 24);
    expect(header.fileSize).toBe(header.dataOffset + 24 + 140 + 4);
    const [ta, tb, ts, te] = header.tensors;
    expect(readTensorFloat32(ta)).toEqual(a);
    expect(readTensorFloat32(tb)).toEqual(b);
    expect(readTensorFloat32(ts)).toEqual(scalar);
    expect(readTensorFloat32(te)).toEqual(new Float32Array(0));
    expect(readdirSync(dir).filter((name) => name.includes('partial'))).toEqual([]);
  });

  it('round-trips F16 tensors to the nearest half value', () => {
    const file = join(dir, 'round-trip-f16.safetensors');
    const exact = new Float32Array([1, -2, 0.5, 65504, 2 ** -24, -(2 ** -14), 0, Infinity, -Infinity]);
    const inexact = ramp(100, 10);
    writeSafetensors(file, [
      { name: 'exact', shape: [9], data: exact, dtype: 'F16' },
      { name: 'inexact', shape: [10, 10], data: inexact, dtype: 'F16' },
      { name: 'f32', shape: [3], data: new Float32Array([1, 2, 3]) },
    ]);
    const header = readSafetensorsHeader(file);
    expect(header.tensors.map((t) => [t.dtype, t.byteLength])).toEqual([
      ['F16', 18],
      ['F16', 200],
      ['F32', 12],
    ]);
    expect(readTensorFloat32(header.tensors[0])).toEqual(exact);
    const back = readTensorFloat32(header.tensors[1]);
    for (let i = 0; i < inexact.length; i++) {
      expect(back[i]).toBe(f16BitsToF32(f32ToF16Bits(inexact[i])));
      expect(Math.abs(back[i] - inexact[i])).toBeLessThanOrEqual(Math.abs(inexact[i]) * 2 ** -11 + 2 ** -25);
    }
    expect(readTensorFloat32(header.tensors[2])).toEqual(new Float32Array([1, 2, 3]));
  });

  it('writes tensors larger than one I/O chunk intact', () => {
    const file = join(dir, 'chunks.safetensors');
    const big = ramp(2_500_001, 100); // spans the 4 MiB chunks of both the F32 and the F16 path
    writeSafetensors(file, [
      { name: 'big32', shape: [2_500_001], data: big },
      { name: 'big16', shape: [2_500_001], data: big, dtype: 'F16' },
    ]);
    const [t32, t16] = readSafetensorsHeader(file).tensors;
    const back = readTensorFloat32(t32);
    expect(back.length).toBe(big.length);
    let mismatches = 0; // counted by hand: a deep equality over millions of elements takes seconds
    for (let i = 0; i < big.length; i++) if (back[i] !== big[i]) mismatches++;
    expect(mismatches).toBe(0);
    const half = readTensorFloat32(t16);
    for (const i of [0, 1, 1_048_575, 1_048_576, 1_048_577, 2_097_151, 2_097_152, 2_097_153, 2_500_000]) {
      expect(half[i], `element ${i}`).toBe(f16BitsToF32(f32ToF16Bits(big[i])));
    }
  });

  it('reads BF16 and F16 tensors from hand-built files', () => {
    const file = join(dir, 'bf16.safetensors');
    writeRawSafetensors(file, [
      { name: 'bf', dtype: 'BF16', shape: [5], bytes: u16Bytes([0x3f80, 0xc000, 0x3f00, 0x7f80, 0x0001]) },
      { name: 'hf', dtype: 'F16', shape: [5], bytes: u16Bytes([0x3c00, 0xc000, 0x3800, 0x7bff, 0x0001]) },
    ]);
    const [bf, hf] = readSafetensorsHeader(file).tensors;
    expect([...readTensorFloat32(bf)]).toEqual([1, -2, 0.5, Infinity, Math.fround(2 ** -133)]);
    expect([...readTensorFloat32(hf)]).toEqual([1, -2, 0.5, 65504, 2 ** -24]);
  });
});

describe('safetensors errors', () => {
  it('refuses a file shorter than the 8-byte header length', () => {
    const file = join(dir, 'short.safetensors');
    writeFileSync(file, Buffer.from([1, 2, 3, 4, 5]));
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'is 5 bytes', 'at least 8');
  });

  it('refuses an absurd header length', () => {
    const file = join(dir, 'absurd.safetensors');
    const bytes = Buffer.alloc(64);
    bytes.writeBigUInt64LE(2n ** 60n, 0);
    writeFileSync(file, bytes);
    expectCheckpointError(() => readSafetensorsHeader(file), file, String(2n ** 60n), 'room for 56');
  });

  it('refuses a header length beyond the end of the file', () => {
    const file = join(dir, 'beyond.safetensors');
    const bytes = Buffer.alloc(100);
    bytes.writeBigUInt64LE(1000n, 0);
    writeFileSync(file, bytes);
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'header length is 1000 bytes', 'room for 92');
  });

  it('refuses a header that is not JSON, or not a JSON object', () => {
    const file = join(dir, 'not-json.safetensors');
    writeRawSafetensors(file, [], '{"a": {"dtype": "F32",');
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'not JSON');
    writeRawSafetensors(file, [], '[1, 2]');
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'not an object');
  });

  it('refuses malformed tensor entries, naming the tensor', () => {
    const file = join(dir, 'malformed.safetensors');
    const entry = (value: unknown): string => JSON.stringify({ 'h.0.w': value });
    writeRawSafetensors(file, [], entry({ dtype: 7, shape: [1], data_offsets: [0, 4] }));
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'h.0.w', 'dtype 7');
    writeRawSafetensors(file, [], entry({ dtype: 'F32', shape: [-1], data_offsets: [0, 4] }));
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'h.0.w', 'shape [-1]');
    writeRawSafetensors(file, [], entry({ dtype: 'F32', shape: [1], data_offsets: [4, 0] }));
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'h.0.w', 'data_offsets [4,0]');
    writeRawSafetensors(file, [], JSON.stringify({ __metadata__: { n: 3 } }));
    expectCheckpointError(() => readSafetensorsHeader(file), file, '__metadata__.n is 3');
  });

  it('refuses offsets past the end of a truncated file, naming the tensor', () => {
    const file = join(dir, 'truncated.safetensors');
    writeSafetensors(file, [
      { name: 'first', shape: [4], data: ramp(4) },
      { name: 'second', shape: [100], data: ramp(100) },
    ]);
    const header = readSafetensorsHeader(file);
    truncateSync(file, header.fileSize - 10);
    const error = expectCheckpointError(() => readSafetensorsHeader(file), file, 'tensor second', 'truncated');
    expect(error.message).toContain(`ends at byte ${16 + 400}`);
  });

  it('refuses a byte length that does not match shape and dtype', () => {
    const file = join(dir, 'mismatch.safetensors');
    writeRawSafetensors(file, [{ name: 'w', dtype: 'F32', shape: [2, 3], bytes: f32Bytes(ramp(5)) }]);
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'tensor w', 'spans 20 bytes', '[2, 3] of F32 needs 24');
    writeRawSafetensors(file, [{ name: 'h', dtype: 'F16', shape: [4], bytes: f32Bytes(ramp(4)) }]);
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'tensor h', 'spans 16 bytes', 'needs 8');
  });

  it('refuses to read integer and F64 tensors as float32', () => {
    const file = join(dir, 'ints.safetensors');
    writeRawSafetensors(file, [
      { name: 'ids', dtype: 'I64', shape: [2], bytes: new Uint8Array(16) },
      { name: 'double', dtype: 'F64', shape: [1], bytes: new Uint8Array(8) },
    ]);
    const [ids, double] = readSafetensorsHeader(file).tensors;
    expectCheckpointError(() => readTensorFloat32(ids), file, 'tensor ids', 'dtype I64', 'F32, F16, BF16');
    expectCheckpointError(() => readTensorFloat32(double), file, 'tensor double', 'dtype F64');
  });

  it('reports a file truncated after its header was read, naming the tensor', () => {
    const file = join(dir, 'late-truncation.safetensors');
    writeSafetensors(file, [{ name: 'w', shape: [64], data: ramp(64) }]);
    const [tensor] = readSafetensorsHeader(file).tensors;
    truncateSync(file, tensor.byteOffset + 100);
    expectCheckpointError(() => readTensorFloat32(tensor), file, 'tensor w', 'ended after 100 of 256 bytes');
  });

  it('reports a missing file', () => {
    const file = join(dir, 'absent.safetensors');
    expectCheckpointError(() => readSafetensorsHeader(file), file, 'cannot open');
  });

  it('refuses to write data that does not match the shape, or repeated names, and leaves no file behind', () => {
    const file = join(dir, 'bad-write.safetensors');
    expectCheckpointError(
      () => writeSafetensors(file, [{ name: 'w', shape: [2, 3], data: ramp(5) }]),
      file,
      'tensor w has 5 values',
      '[2, 3] needs 6',
    );
    expectCheckpointError(
      () =>
        writeSafetensors(file, [
          { name: 'w', shape: [1], data: ramp(1) },
          { name: 'w', shape: [1], data: ramp(1) },
        ]),
      file,
      '"w"',
      'repeated',
    );
    expect(readdirSync(dir).filter((name) => name.startsWith('bad-write'))).toEqual([]);
  });
});
