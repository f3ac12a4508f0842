#!/usr/bin/env bash
# Generate the Python stubs of recite's API into examples/python/gen/, offline, from proto/ alone: Debian's protoc
# with its well-known types and grpc_python_plugin (apt-get install protobuf-compiler libprotobuf-dev
# protobuf-compiler-grpc). The stubs are generated, never edited or committed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
plugin=$(command -v grpc_python_plugin) || { echo "generate.sh: grpc_python_plugin not found (apt-get install protobuf-compiler-grpc)" >&2; exit 1; }
out=examples/python/gen
rm -rf "$out"
mkdir -p "$out"
protoc -Iproto --python_out="$out" --grpc_python_out="$out" --plugin=protoc-gen-grpc_python="$plugin" \
  recite/v1/recite.proto recite/v1/dataset.proto buf/validate/validate.proto
echo "stubs of recite.v1 and buf.validate in $out/"
