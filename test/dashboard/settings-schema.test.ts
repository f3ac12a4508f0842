// The dashboard's settings follow the proto and the engine: the schema the page reads lists every optimizer and
// schedule the proto has (and the engine runs), with the engine's defaults and the server's limits, and the page's
// labels name every enum value by the name the CLI takes, with no table of its own to forget.
import { describe, expect, it } from 'vitest';
import { settingsSchemaJson } from '../../server/dashboard/settings-schema.js';
import { lrScheduleKinds } from '../../server/engine/lr-schedule.js';
import { optimizerKinds } from '../../server/engine/optimizers.js';
import { inversionDefaults, inversionLimits } from '../../server/engine/settings.js';
import { OptimizerSchema, ScheduleSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
// A plain browser module: its types are inferred from the JavaScript (allowJs).
import { settingsRows } from '../../server/dashboard/static/format.js';

const rowOf = (rows: string[][], label: string) => rows.find(([l]) => l === label)?.[1];

describe('the settings schema the dashboard serves', () => {
  const schema = settingsSchemaJson({ ...inversionLimits, maxIterations: 777 });

  it('offers every value of the proto enums, by the engine kinds the CLI also takes', () => {
    expect(schema.choices.optimizer!.map((c) => c.value))
      .toEqual(OptimizerSchema.values.filter((v) => v.number !== 0).map((v) => v.name));
    expect(schema.choices.optimizer!.map((c) => c.label)).toEqual([...optimizerKinds]);
    expect(schema.choices.schedule!.map((c) => c.label)).toEqual([...lrScheduleKinds]);
    expect(schema.choices.schedule!.map((c) => c.value))
      .toEqual(ScheduleSchema.values.filter((v) => v.number !== 0).map((v) => v.name));
  });

  it('states the engine defaults and the server limits it was given', () => {
    expect(schema.defaults).toMatchObject({
      lr: inversionDefaults.lr, maxIterations: inversionDefaults.maxIterations, seed: inversionDefaults.seed,
      optimizer: `OPTIMIZER_${inversionDefaults.optimizer.toUpperCase()}`,
      schedule: `SCHEDULE_${inversionDefaults.schedule.toUpperCase()}`,
    });
    expect(schema.limits.maxIterations).toBe(777);
  });
});

describe('the page\'s settings labels', () => {
  it('name every optimizer and schedule by its kind, never as another one', () => {
    for (const { value, label } of settingsSchemaJson(inversionLimits).choices.optimizer!) {
      expect(rowOf(settingsRows({ optimizer: value, momentum: 0.5 }), 'optimizer')).toMatch(new RegExp(`^${label}\\b`));
    }
    for (const { value, label } of settingsSchemaJson(inversionLimits).choices.schedule!) {
      expect(rowOf(settingsRows({ lr: 0.1, schedule: value }), 'learning rate')).toBe(`0.1, ${label} schedule`);
    }
    // A value this page has never heard of is shown as itself.
    expect(rowOf(settingsRows({ optimizer: 'OPTIMIZER_FROM_THE_FUTURE' }), 'optimizer')).toBe('from_the_future');
  });

  it('reads an absent number as the zero it stands for in proto JSON, not as a default', () => {
    const rows = settingsRows({ optimizer: 'OPTIMIZER_SGD', lr: 0.05, maxIterations: 10, restarts: 1, reportEvery: 1 });
    expect(rowOf(rows, 'optimizer')).toBe('sgd (momentum 0)');
    expect(rowOf(rows, 'seed')).toBe('0');
  });
});
