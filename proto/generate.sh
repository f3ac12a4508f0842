#!/usr/bin/env bash
# Generate sdk/gen/ from proto/ offline. proto/ is self-contained: buf/validate/validate.proto, which recite's .proto
# files import, is printed from the descriptor that @bufbuild/protovalidate ships (the package has no .proto source),
# and the well-known types come with protoc. protoc compiles recite.v1, grpc.health.v1 (from grpc-health-check) and
# grpc.reflection v1 and v1alpha (from @grpc/reflection) into one image; `buf generate` then runs protoc-gen-es on it
# as buf.gen.yaml says. Needs protoc and the well-known types (Debian: protobuf-compiler, libprotobuf-dev).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v protoc >/dev/null || { echo "proto/generate.sh: protoc not found (apt-get install protobuf-compiler libprotobuf-dev)" >&2; exit 1; }
node proto/tools/print-validate-proto.mjs proto/buf/validate/validate.proto
trap 'rm -f proto/image.binpb' EXIT
protoc -Iproto -Inode_modules/grpc-health-check/proto -Inode_modules/@grpc/reflection/build/proto \
  --include_imports --include_source_info --descriptor_set_out=proto/image.binpb \
  proto/recite/v1/*.proto health/v1/health.proto grpc/reflection/v1/reflection.proto \
  grpc/reflection/v1alpha/reflection.proto
npx buf generate
# The compiled descriptor set, imports included, for clients that load the API at run time (grpc-js with
# @grpc/proto-loader, grpcurl, buf curl --schema).
cp proto/image.binpb sdk/gen/recite.binpb
