#!/usr/bin/env python3
"""Read a `recite dataset run` result pair with the standard library only, as any other tool would.

Usage: read_results.py RESULTS.jsonl RESULTS.safetensors

Parses the safetensors header (u64 little-endian length, JSON), checks every tensor: dtype F32, shape (P, C),
offsets contiguous, in order and inside the file; reads its floats with struct; parses the JSON lines and checks
that each line's id has a tensor of the line's embedding_shape. Prints a JSON report; exits 1 on any violation.
"""
import json
import math
import struct
import sys


def fail(message):
    print(f"read_results.py: {message}", file=sys.stderr)
    sys.exit(1)


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 8:
        fail(f"{path}: {len(data)} bytes; a safetensors file starts with an 8-byte header length")
    (header_len,) = struct.unpack("<Q", data[:8])
    if 8 + header_len > len(data):
        fail(f"{path}: header of {header_len} bytes runs past the end of the file ({len(data)} bytes)")
    header = json.loads(data[8:8 + header_len].decode("utf-8"))
    metadata = header.pop("__metadata__", {})
    data_start = 8 + header_len
    region = len(data) - data_start
    tensors = {}
    expected_begin = 0
    for name, info in sorted(header.items(), key=lambda kv: kv[1]["data_offsets"][0]):
        if info["dtype"] != "F32":
            fail(f"{name}: dtype {info['dtype']}; expected F32")
        shape = info["shape"]
        begin, end = info["data_offsets"]
        count = math.prod(shape)
        if begin != expected_begin:
            fail(f"{name}: data starts at {begin}; the previous tensor ended at {expected_begin}")
        if end - begin != 4 * count:
            fail(f"{name}: {end - begin} bytes for shape {shape} ({count} floats need {4 * count})")
        if end > region:
            fail(f"{name}: data ends at {end}, past the data region of {region} bytes")
        values = struct.unpack(f"<{count}f", data[data_start + begin:data_start + end])
        if not all(math.isfinite(v) for v in values):
            fail(f"{name}: a value is not finite")
        tensors[name] = (shape, values)
        expected_begin = end
    if expected_begin != region:
        fail(f"the data region has {region} bytes; the tensors use {expected_begin}")
    return metadata, tensors


def main():
    if len(sys.argv) != 3:
        fail("usage: read_results.py RESULTS.jsonl RESULTS.safetensors")
    jsonl_path, safetensors_path = sys.argv[1], sys.argv[2]
    metadata, tensors = read_safetensors(safetensors_path)
    lines = []
    with open(jsonl_path, encoding="utf-8") as f:
        for number, text in enumerate(f, 1):
            if not text.endswith("\n"):
                fail(f"{jsonl_path}:{number}: the last line has no newline")
            line = json.loads(text)
            for field in ("id", "text", "status", "iterations_to_hit", "best_nll", "bits_per_token", "bits_per_char",
                          "decoded_text", "search_ms", "job_id"):
                if field not in line:
                    fail(f"{jsonl_path}:{number}: no field {field!r}")
            lines.append(line)
    ids = [line["id"] for line in lines]
    if len(set(ids)) != len(ids):
        fail(f"{jsonl_path}: an id appears on more than one line")
    for line in lines:
        shape = line["embedding_shape"]
        if shape is None:
            continue
        if line["id"] not in tensors:
            fail(f"{line['id']}: no tensor in {safetensors_path}")
        if tensors[line["id"]][0] != shape:
            fail(f"{line['id']}: tensor shape {tensors[line['id']][0]}, line says {shape}")
        if line["status"] == "HIT" and line["iterations_to_hit"] is None:
            fail(f"{line['id']}: a HIT without iterations_to_hit")
        if line["best_nll"] is not None and line["tokens"] > 0:
            bits = line["best_nll"] / math.log(2) / line["tokens"]
            if abs(bits - line["bits_per_token"]) > 1e-9 * max(1.0, bits):
                fail(f"{line['id']}: bits_per_token {line['bits_per_token']} is not best_nll / ln 2 / tokens = {bits}")
    print(json.dumps({
        "lines": len(lines),
        "tensors": len(tensors),
        "hits": sum(1 for line in lines if line["status"] == "HIT"),
        "metadata": metadata,
        "sums": {name: math.fsum(values) for name, (shape, values) in tensors.items()},
    }))


if __name__ == "__main__":
    main()
