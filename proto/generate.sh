#!/usr/bin/env bash
# Generate sdk/gen/ from proto/ offline: protoc compiles recite's .proto files and grpc.health.v1 into one image,
# with buf/validate/validate.proto supplied as a descriptor set from the @bufbuild/protovalidate package; then
# `buf generate` runs protoc-gen-es on that image as buf.gen.yaml says. Needs protoc (Debian: protobuf-compiler).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
command -v protoc >/dev/null || { echo "proto/generate.sh: protoc not found (apt-get install protobuf-compiler)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
node proto/tools/dependency-descriptors.mjs "$work/deps.binpb"
protoc --descriptor_set_in="$work/deps.binpb" -Iproto -Inode_modules/grpc-health-check/proto \
  --include_imports --include_source_info --descriptor_set_out=proto/image.binpb \
  proto/recite/v1/*.proto health/v1/health.proto
trap 'rm -rf "$work" proto/image.binpb' EXIT
npx buf generate
# The compiled descriptor set, imports included, for clients that load the API at run time (grpc-js with
# @grpc/proto-loader, grpcurl): they need buf/validate/validate.proto too, which it carries.
cp proto/image.binpb sdk/gen/recite.binpb
