// Write the descriptors of the .proto files recite's API imports (buf/validate/validate.proto and the well-known
// types under it) as a FileDescriptorSet, taken from the npm package that embeds them. protoc reads this set in
// place of .proto sources (--descriptor_set_in), so code generation needs neither a schema registry nor a network.
// Plain JavaScript: it runs before the TypeScript build, which needs the code it helps generate.
//
// Usage: node proto/tools/dependency-descriptors.mjs OUT.binpb
import fs from 'node:fs';
import { create, toBinary } from '@bufbuild/protobuf';
import { FileDescriptorSetSchema } from '@bufbuild/protobuf/wkt';
import { file_buf_validate_validate } from '@bufbuild/protovalidate/gen/buf/validate/validate_pb.js';

/** Return the descriptor set of `roots` and everything they import, dependencies first. */
function descriptorSetOf(roots) {
  const seen = new Set();
  const files = [];
  const visit = (file) => {
    if (seen.has(file.name)) return;
    seen.add(file.name);
    file.dependencies.forEach(visit);
    files.push(file.proto);
  };
  roots.forEach(visit);
  return toBinary(FileDescriptorSetSchema, create(FileDescriptorSetSchema, { file: files }));
}

const out = process.argv[2];
if (!out) throw new Error('usage: dependency-descriptors.mjs OUT.binpb');
fs.writeFileSync(out, descriptorSetOf([file_buf_validate_validate]));
