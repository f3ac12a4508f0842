import { create, fromBinary, toBinary } from '@bufbuild/protobuf';
import { describe, expect, it } from 'vitest';
import { Code, ConnectError, toJobSettings, toJobSpec, toTensor } from '../../sdk/index.js';
import type { InvertOptions } from '../../sdk/index.js';
import {
  JobSettingsSchema,
  JobSpecSchema,
  Optimizer,
  OptimizerSchema,
  Parameterization_Basis,
  Schedule,
  ScheduleSchema,
} from '../../sdk/gen/recite/v1/recite_pb.js';

function invalidArgument(fn: () => unknown): ConnectError {
  try {
    fn();
  } catch (error) {
    const e = ConnectError.from(error);
    expect(e.code).toBe(Code.InvalidArgument);
    return e;
  }
  throw new Error('expected a throw');
}

describe('toJobSettings', () => {
  it('sends zero values for options left out, so the server applies its defaults', () => {
    const settings = toJobSettings({});
    expect(settings).toEqual(create(JobSettingsSchema));
    expect(settings.momentum).toBeUndefined();
    expect(settings.parameterization).toBeUndefined();
    expect(settings.init).toBeUndefined();
    expect(settings.decoder).toBeUndefined();
  });

  it('maps every scalar option onto its JobSettings field', () => {
    const options: Required<Omit<InvertOptions, 'parameterization' | 'init' | 'decode'>> = {
      optimizer: 'sgd',
      lr: 0.05,
      momentum: 0.8,
      schedule: 'cosine',
      lrRelativeToNorm: true,
      maxIterations: 500,
      patience: 40,
      nllThreshold: 0.25,
      curriculum: true,
      continueAfterHit: true,
      restarts: 4,
      seed: 11,
      reportEvery: 5,
      repetitionPenalty: 1.3,
    };
    const settings = toJobSettings(options);
    expect(settings).toMatchObject({
      optimizer: Optimizer.SGD,
      lr: 0.05,
      momentum: 0.8,
      schedule: Schedule.COSINE,
      lrRelativeToNorm: true,
      maxIterations: 500,
      patience: 40,
      nllThreshold: 0.25,
      curriculum: true,
      continueAfterHit: true,
      restarts: 4,
      seed: 11,
      reportEvery: 5,
      repetitionPenalty: 1.3,
    });
    // Every option key has a JobSettings field of the same name (decode is the one renamed: decoder).
    const fields = JobSettingsSchema.fields.map((f) => f.localName);
    for (const key of Object.keys(options)) expect(fields).toContain(key);
  });

  it('keeps momentum 0 as set, apart from unset (which means 0.9)', () => {
    expect(toJobSettings({ momentum: 0 }).momentum).toBe(0);
    const roundTrip = fromBinary(JobSettingsSchema, toBinary(JobSettingsSchema, toJobSettings({ momentum: 0 })));
    expect(roundTrip.momentum).toBe(0);
  });

  it('takes every value of the proto\'s Optimizer and Schedule enums by its short name, read from the descriptor', () => {
    for (const [desc, field] of [[OptimizerSchema, 'optimizer'], [ScheduleSchema, 'schedule']] as const) {
      for (const v of desc.values.filter((value) => value.number !== 0)) {
        expect(toJobSettings({ [field]: v.localName.toLowerCase() } as InvertOptions)[field]).toBe(v.number);
      }
      // UNSPECIFIED is not a name a client may send: leaving the option out means the server's default.
      expect(invalidArgument(() => toJobSettings({ [field]: 'unspecified' } as InvertOptions)).message)
        .toContain(desc.values.filter((v) => v.number !== 0).map((v) => `'${v.localName.toLowerCase()}'`).join(', '));
    }
  });

  it('maps each optimizer and schedule name: the proto value\'s name without the prefix, in lower case', () => {
    expect(toJobSettings({ optimizer: 'rmsprop' }).optimizer).toBe(Optimizer.RMSPROP);
    expect(toJobSettings({ optimizer: 'adam' }).optimizer).toBe(Optimizer.ADAM);
    expect(toJobSettings({ optimizer: 'sgd' }).optimizer).toBe(Optimizer.SGD);
    expect(toJobSettings({ schedule: 'constant' }).schedule).toBe(Schedule.CONSTANT);
    expect(toJobSettings({ schedule: 'cosine' }).schedule).toBe(Schedule.COSINE);
    expect(toJobSettings({ schedule: 'plateau' }).schedule).toBe(Schedule.PLATEAU);
    for (const value of OptimizerSchema.values.filter((v) => v.number !== Optimizer.UNSPECIFIED)) {
      const name = value.name.slice('OPTIMIZER_'.length).toLowerCase() as InvertOptions['optimizer'];
      expect(toJobSettings({ optimizer: name }).optimizer, value.name).toBe(value.number);
    }
    for (const value of ScheduleSchema.values.filter((v) => v.number !== Schedule.UNSPECIFIED)) {
      const name = value.name.slice('SCHEDULE_'.length).toLowerCase() as InvertOptions['schedule'];
      expect(toJobSettings({ schedule: name }).schedule, value.name).toBe(value.number);
    }
    expect(invalidArgument(() => toJobSettings({ optimizer: 'unspecified' as never })).message)
      .toContain('optimizer is "unspecified"');
  });

  it('maps each parameterization form', () => {
    expect(toJobSettings({ parameterization: 'flat' }).parameterization?.kind).toMatchObject({ case: 'flat' });
    expect(toJobSettings({ parameterization: 'full' }).parameterization?.kind)
      .toMatchObject({ case: 'full', value: { promptVectors: 0 } });
    expect(toJobSettings({ parameterization: { kind: 'full', promptVectors: 6 } }).parameterization?.kind)
      .toMatchObject({ case: 'full', value: { promptVectors: 6 } });
    expect(toJobSettings({ parameterization: { kind: 'projected', dims: 16 } }).parameterization?.kind)
      .toMatchObject({ case: 'projected', value: { dims: 16, basis: Parameterization_Basis.UNSPECIFIED } });
    expect(toJobSettings({ parameterization: { kind: 'projected', dims: 8, basis: 'pca' } }).parameterization?.kind)
      .toMatchObject({ case: 'projected', value: { dims: 8, basis: Parameterization_Basis.PCA } });
    expect(toJobSettings({ parameterization: { kind: 'projected', dims: 8, basis: 'random' } }).parameterization?.kind)
      .toMatchObject({ case: 'projected', value: { dims: 8, basis: Parameterization_Basis.RANDOM } });
  });

  it('maps each init form', () => {
    expect(toJobSettings({ init: 'random' }).init?.kind).toMatchObject({ case: 'random', value: { std: 0 } });
    expect(toJobSettings({ init: { kind: 'random', std: 0.5 } }).init?.kind).toMatchObject({ case: 'random', value: { std: 0.5 } });
    expect(toJobSettings({ init: 'zeros' }).init?.kind.case).toBe('zeros');
    expect(toJobSettings({ init: 'mean' }).init?.kind.case).toBe('mean');
    expect(toJobSettings({ init: { kind: 'text', text: 'Once upon' } }).init?.kind).toEqual({ case: 'text', value: 'Once upon' });
    const embedding = { shape: [2, 3], values: new Float32Array([1, 2, 3, 4, 5, 6.5]) };
    const init = toJobSettings({ init: { kind: 'embedding', embedding } }).init;
    expect(init?.kind.case).toBe('embedding');
    expect(init?.kind.value).toMatchObject({ shape: [2, 3], values: [1, 2, 3, 4, 5, 6.5] });
  });

  it('maps decode: greedy is one beam, beam search keeps beams and every', () => {
    expect(toJobSettings({ decode: 'greedy' }).decoder).toMatchObject({ beams: 1, every: 0 });
    expect(toJobSettings({ decode: { beams: 4 } }).decoder).toMatchObject({ beams: 4, every: 0 });
    expect(toJobSettings({ decode: { beams: 4, every: 25 } }).decoder).toMatchObject({ beams: 4, every: 25 });
  });

  it('refuses values no field can hold with InvalidArgument naming the option and the value', () => {
    const cases: [InvertOptions, string][] = [
      [{ optimizer: 'lbfgs' as never }, 'optimizer is "lbfgs"'],
      [{ schedule: 'linear' as never }, 'schedule is "linear"'],
      [{ parameterization: 'half' as never }, 'parameterization is "half"'],
      [{ parameterization: { kind: 'projected', dims: 4, basis: 'svd' as never } }, 'parameterization.basis is "svd"'],
      [{ init: 'ones' as never }, 'init is "ones"'],
      [{ decode: 'beam' as never }, 'decode is "beam"'],
    ];
    for (const [options, message] of cases) expect(invalidArgument(() => toJobSettings(options)).message).toContain(message);
  });
});

describe('toJobSpec', () => {
  it('sends text as text and an id array as target_ids, with model, label and settings', () => {
    const text = toJobSpec('Hello world', { model: 'gpt2', label: 'row 7', lr: 0.2 });
    expect(text.target).toEqual({ case: 'text', value: 'Hello world' });
    expect(text).toMatchObject({ model: 'gpt2', label: 'row 7', settings: { lr: 0.2 } });
    const ids = toJobSpec([15496, 995]);
    expect(ids.target.case).toBe('targetIds');
    expect(ids.target.value).toMatchObject({ ids: [15496, 995] });
    expect(ids).toMatchObject({ model: '', label: '' });
    // The spec survives the wire unchanged.
    expect(fromBinary(JobSpecSchema, toBinary(JobSpecSchema, text))).toEqual(text);
  });

  it('refuses a target that is neither text nor ids', () => {
    expect(invalidArgument(() => toJobSpec(42 as never)).message).toContain('target is 42');
  });
});

describe('toTensor', () => {
  it('copies shape and values into plain arrays', () => {
    const tensor = toTensor({ shape: [1, 2], values: new Float32Array([0.5, -1]) });
    expect(tensor.shape).toEqual([1, 2]);
    expect(tensor.values).toEqual([0.5, -1]);
  });
});
