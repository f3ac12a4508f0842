// Safetensors files made in the browser: an 8-byte little-endian header length, the JSON header (padded with
// spaces to a multiple of 8 bytes), then float32 little-endian data. The layout `recite invert --out` writes, so
// `recite decode FILE` reads a downloaded embedding as it reads its own.

/**
 * Encode float32 tensors ({name, shape, values}) with string metadata.
 * @returns {Uint8Array}
 */
export function encodeSafetensors(tensors, metadata) {
  const header = {};
  if (metadata) header.__metadata__ = metadata;
  let offset = 0;
  for (const t of tensors) {
    const count = t.shape.reduce((a, b) => a * b, 1);
    if (t.values.length !== count) {
      throw new Error(`tensor ${t.name}: ${t.values.length} values; shape [${t.shape.join(', ')}] needs ${count}`);
    }
    header[t.name] = { dtype: 'F32', shape: t.shape, data_offsets: [offset, offset + count * 4] };
    offset += count * 4;
  }
  const encoder = new TextEncoder();
  const json = JSON.stringify(header);
  const pad = (8 - (encoder.encode(json).length % 8)) % 8;
  const headerBytes = encoder.encode(json + ' '.repeat(pad));
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  let at = 8 + headerBytes.length;
  for (const t of tensors) {
    for (const v of t.values) {
      view.setFloat32(at, Number(v), true); // proto JSON writes non-finite floats as "NaN", "Infinity"
      at += 4;
    }
  }
  return out;
}

/** Encode a job's result (proto JSON of Result): the best embedding as `embedding`, each restart's as `restart.N`. */
export function resultSafetensors(result) {
  const restarts = result.restarts ?? [];
  const best = restarts[result.best ?? 0];
  if (!best?.embedding?.values?.length) throw new Error('the result holds no embedding');
  const tensor = (name, r) => ({ name, shape: r.embedding.shape, values: r.embedding.values });
  return encodeSafetensors([
    tensor('embedding', best),
    ...restarts.filter((r) => r.embedding?.values?.length).map((r) => tensor(`restart.${r.restart ?? 0}`, r)),
  ], {
    target_text: result.targetText ?? '',
    target_ids: JSON.stringify(result.targetIds ?? []),
    status: String(result.status ?? 'STATUS_UNSPECIFIED').replace(/^STATUS_/, ''),
    best_restart: String(result.best ?? 0),
    model: result.model ?? '',
  });
}
