// The job page's settings table (server/dashboard/static/format.js): the repetition penalty shows when it is on, and
// neither 1 nor 0 (a job stored before the setting existed) shows a row.
import { describe, expect, it } from 'vitest';
// A plain browser module: its types are inferred from the JavaScript (allowJs).
import { settingsRows } from '../../server/dashboard/static/format.js';

const rows = (settings: object) => settingsRows(settings, 2) as [string, string][];

describe('settingsRows', () => {
  it('shows a repetition penalty other than 1', () => {
    expect(rows({ repetitionPenalty: 1.3 })).toContainEqual(['repetition penalty', 'θ = 1.3']);
    expect(rows({ repetitionPenalty: 0.7 })).toContainEqual(['repetition penalty', 'θ = 0.7']);
  });

  it('shows none when it is off', () => {
    for (const settings of [{}, { repetitionPenalty: 1 }, { repetitionPenalty: 0 }]) {
      expect(rows(settings).map(([label]) => label)).not.toContain('repetition penalty');
    }
  });
});
