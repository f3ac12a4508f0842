// Safetensors files made in the browser, by the writer `recite invert --out` uses (server/model/safetensors-layout.js,
// served to the page at the path this import resolves to), so `recite decode FILE` reads a downloaded embedding as it
// reads its own.
import { encodeSafetensors } from '../../model/safetensors-layout.js';

export { encodeSafetensors };

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
