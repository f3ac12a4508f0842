// The request path an engine settings error names, found in the proto's descriptor: every field the engine checks
// maps onto the path a client wrote, through oneof members and the few names that differ.
import { describe, expect, it } from 'vitest';
import { settingsFieldPath } from '../../server/service/validation.js';
import { makeInversionSettings, inversionLimits, SettingsError } from '../../server/engine/settings.js';
import type { InversionSettings } from '../../server/engine/settings.js';

describe('settingsFieldPath', () => {
  it.each([
    ['lr', 'spec.settings.lr'],
    ['maxIterations', 'spec.settings.max_iterations'],
    ['nllThreshold', 'spec.settings.nll_threshold'],
    ['reportEvery', 'spec.settings.report_every'],
    ['parameterization', 'spec.settings.parameterization'],
    ['parameterization.promptVectors', 'spec.settings.parameterization.full.prompt_vectors'],
    ['parameterization.dims', 'spec.settings.parameterization.projected.dims'],
    ['parameterization.basis', 'spec.settings.parameterization.projected.basis'],
    ['init.std', 'spec.settings.init.random.std'],
    ['init.text', 'spec.settings.init.text'],
    ['init.values', 'spec.settings.init.embedding.values'],
    ['decode.beams', 'spec.settings.decoder.beams'],
    ['decode.every', 'spec.settings.decoder.every'],
    ['stopOnHit', 'spec.settings.continue_after_hit'],
    ['target', 'spec.target'],
    ['target_ids[3]', 'spec.target_ids.ids[3]'],
  ])('maps %s to %s', (field, path) => {
    expect(settingsFieldPath(field)).toBe(path);
  });

  it('names a proto path for every field the engine refuses', () => {
    const bad: Partial<InversionSettings>[] = [
      { lr: -1 }, { momentum: 2 }, { maxIterations: 0 }, { patience: -1 }, { nllThreshold: -1 }, { restarts: 0 },
      { seed: -1 }, { reportEvery: 0 }, { parameterization: { kind: 'full', promptVectors: 0 } },
      { parameterization: { kind: 'projected', dims: 0, basis: 'pca' } }, { decode: { kind: 'beam', beams: 99, every: 1 } },
      { decode: { kind: 'beam', beams: 2, every: 0 } }, { init: { kind: 'random', std: -1 } },
      { init: { kind: 'embedding', values: [Number.NaN] } },
    ];
    for (const partial of bad) {
      let field = '';
      try {
        makeInversionSettings(partial, inversionLimits);
      } catch (error: unknown) {
        if (error instanceof SettingsError) field = error.field;
      }
      expect(field, JSON.stringify(partial)).not.toBe('');
      // Every step of the path is a proto (snake_case) name, found in the descriptor rather than passed through.
      const path = settingsFieldPath(field);
      expect(path, field).toMatch(/^spec\.settings(\.[a-z_]+)+$/);
      expect(path.split('.').length, field).toBeGreaterThanOrEqual(field.split('.').length + 2);
    }
  });
});
