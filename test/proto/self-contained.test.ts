// proto/ compiles on its own, offline: buf/validate/validate.proto is printed from the descriptor that
// @bufbuild/protovalidate ships (proto/tools/print-validate-proto.mjs), and printing is only right if protoc turns
// the printed file back into that very descriptor. protoc, buf build and buf lint then need nothing but proto/ (and
// the well-known types every protoc ships).
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema, FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { file_buf_validate_validate } from '@bufbuild/protovalidate/gen/buf/validate/validate_pb.js';
import { afterAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-proto-'));
const buf = path.join(root, 'node_modules/.bin/buf');

afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

/** Every .proto under proto/, relative to it. */
function protoFiles(): string[] {
  return (fs.readdirSync(path.join(root, 'proto'), { recursive: true }) as string[])
    .filter((f) => f.endsWith('.proto')).sort();
}

function run(command: string, args: string[]) {
  return spawnSync(command, args, { cwd: root, encoding: 'utf8' });
}

describe('proto/ on its own', () => {
  it('holds the validate.proto that the printer prints from the installed @bufbuild/protovalidate', () => {
    const printed = path.join(tmp, 'validate.proto');
    execFileSync('node', ['proto/tools/print-validate-proto.mjs', printed], { cwd: root });
    expect(fs.readFileSync(path.join(root, 'proto/buf/validate/validate.proto'), 'utf8'))
      .toBe(fs.readFileSync(printed, 'utf8'));
  });

  it('validate.proto compiles with protoc to the exact descriptor @bufbuild/protovalidate ships', () => {
    const out = path.join(tmp, 'validate.binpb');
    execFileSync('protoc', ['-Iproto', `--descriptor_set_out=${out}`, 'buf/validate/validate.proto'], { cwd: root });
    const [compiled] = fromBinary(FileDescriptorSetSchema, fs.readFileSync(out)).file;
    const shipped = Buffer.from(toBinary(FileDescriptorProtoSchema, file_buf_validate_validate.proto));
    // the printer must have carried every rule: the 181 rule options hold most of the descriptor's bytes
    expect(shipped.length).toBeGreaterThan(50_000);
    expect(Buffer.from(toBinary(FileDescriptorProtoSchema, compiled!)).equals(shipped)).toBe(true);
  });

  it('compiles every .proto with plain protoc -Iproto', () => {
    const files = protoFiles();
    expect(files).toEqual(expect.arrayContaining(['recite/v1/recite.proto', 'recite/v1/dataset.proto', 'buf/validate/validate.proto']));
    const out = path.join(tmp, 'all.binpb');
    const result = run('protoc', ['-Iproto', '--include_imports', `--descriptor_set_out=${out}`, ...files]);
    expect(result.stderr).toBe('');
    expect(result.status).toBe(0);
    const names = fromBinary(FileDescriptorSetSchema, fs.readFileSync(out)).file.map((f) => f.name);
    expect(names).toEqual(expect.arrayContaining([...files, 'google/protobuf/timestamp.proto']));
  });

  it('passes buf build and buf lint with no dependency to download', () => {
    const built = run(buf, ['build', '-o', path.join(tmp, 'buf.binpb')]);
    expect(built.stderr).toBe('');
    expect(built.status).toBe(0);
    const linted = run(buf, ['lint']);
    expect(linted.stdout + linted.stderr).toBe('');
    expect(linted.status).toBe(0);
  });
});
