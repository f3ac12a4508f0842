// The settings converters between the API and the engine: every value of every settings enum and every case of every
// settings oneof maps, each maps back to itself, and a value the converters lack is an error that names the field
// instead of some default. The optimizer and schedule enums map by name onto the engine's registries: the proto and
// the registries must name the same kinds. The other tables are typed over every value or case, so the compiler also
// refuses a missing one.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { create } from '@bufbuild/protobuf';
import type { MessageInitShape } from '@bufbuild/protobuf';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import { restartResultFromProto, restartResultToProto, settingsFromProto, settingsToProto } from '../../server/service/proto-convert.js';
import { inversionDefaults, SettingsError, storedInversionSettings } from '../../server/engine/settings.js';
import { lrScheduleKinds } from '../../server/engine/lr-schedule.js';
import { optimizerKinds } from '../../server/engine/optimizers.js';
import { enumNames } from '../../sdk/enum-names.js';
import {
  InitializationSchema, JobSettingsSchema, Optimizer, OptimizerSchema, Parameterization_Basis, Parameterization_BasisSchema,
  ParameterizationSchema, RestartResultSchema, Schedule, ScheduleSchema, Status, StatusSchema,
} from '../../sdk/gen/recite/v1/recite_pb.js';
import type { JobSettings } from '../../sdk/gen/recite/v1/recite_pb.js';

const here = path.dirname(fileURLToPath(import.meta.url));

/** Convert to the engine's settings (over the defaults) and back. */
function roundTrip(settings: JobSettings): JobSettings {
  return settingsToProto(storedInversionSettings(settingsFromProto(settings)));
}

describe('the optimizer and schedule enums against the engine\'s registries', () => {
  // OPTIMIZER_ADAM is the optimizer 'adam': a value without a registry entry would be refused as unknown, a registry
  // entry without a value could not be echoed back.
  it.each([
    ['Optimizer', enumNames(OptimizerSchema), optimizerKinds],
    ['Schedule', enumNames(ScheduleSchema), lrScheduleKinds],
  ])('%s names every kind of the registry, and nothing else', (_enum, names, kinds) => {
    const values = Object.keys(names);
    expect(values.filter((name) => !(kinds as readonly string[]).includes(name)), 'proto values without a registry entry').toEqual([]);
    expect(kinds.filter((kind) => !values.includes(kind)), 'registry entries without a proto value').toEqual([]);
  });

  it('names a value by its name without the enum\'s prefix, in lower case', () => {
    expect(enumNames(OptimizerSchema)).toMatchObject({ rmsprop: Optimizer.RMSPROP, adam: Optimizer.ADAM, sgd: Optimizer.SGD });
    expect(enumNames(ScheduleSchema)).toMatchObject({ constant: Schedule.CONSTANT, plateau: Schedule.PLATEAU });
    expect(Object.values(enumNames(OptimizerSchema))).not.toContain(Optimizer.UNSPECIFIED);
  });
});

describe('settingsFromProto and settingsToProto', () => {
  it('map every optimizer and schedule the proto defines, UNSPECIFIED to the engine default', () => {
    for (const { number } of OptimizerSchema.values) {
      const back = roundTrip(create(JobSettingsSchema, { optimizer: number })).optimizer;
      expect(back, `optimizer ${number}`).toBe(number === Optimizer.UNSPECIFIED ? Optimizer.RMSPROP : number);
    }
    expect(inversionDefaults.optimizer).toBe('rmsprop');
    for (const { number } of ScheduleSchema.values) {
      const back = roundTrip(create(JobSettingsSchema, { schedule: number })).schedule;
      expect(back, `schedule ${number}`).toBe(number === Schedule.UNSPECIFIED ? Schedule.CONSTANT : number);
    }
  });

  it('map every parameterization and initialization case, and every projection basis', () => {
    const parameterizations = ParameterizationSchema.oneofs[0]!.fields.map((f) => f.localName);
    expect(parameterizations).toEqual(['full', 'flat', 'projected']);
    for (const { number } of Parameterization_BasisSchema.values) {
      const settings = create(JobSettingsSchema, { parameterization: { kind: { case: 'projected', value: { dims: 8, basis: number } } } });
      const back = roundTrip(settings).parameterization!.kind;
      expect(back).toEqual({ case: 'projected', value: expect.objectContaining({
        dims: 8, basis: number === Parameterization_Basis.UNSPECIFIED ? Parameterization_Basis.RANDOM : number }) });
    }
    const kinds: NonNullable<MessageInitShape<typeof ParameterizationSchema>['kind']>[] = [
      { case: 'full', value: { promptVectors: 3 } }, { case: 'flat', value: {} }];
    for (const kind of kinds) {
      expect(roundTrip(create(JobSettingsSchema, { parameterization: { kind } })).parameterization!.kind.case).toBe(kind.case);
    }
    const inits = InitializationSchema.oneofs[0]!.fields.map((f) => f.localName);
    expect(inits).toEqual(['random', 'zeros', 'mean', 'text', 'embedding']);
    const examples: Record<string, NonNullable<MessageInitShape<typeof InitializationSchema>['kind']>> = {
      random: { case: 'random', value: { std: 0.5 } },
      zeros: { case: 'zeros', value: {} },
      mean: { case: 'mean', value: {} },
      text: { case: 'text', value: 'Hello' },
      embedding: { case: 'embedding', value: { shape: [2], values: [0.25, -0.5] } },
    };
    for (const name of inits) {
      const kind = examples[name]!;
      const back = roundTrip(create(JobSettingsSchema, { init: { kind } })).init!.kind;
      expect(back.case, name).toBe(name);
      expect(back.value).toEqual(create(InitializationSchema, { kind }).kind.value);
    }
  });

  it('refuses an enum value or oneof case it has no entry for, naming the field', () => {
    expect(() => settingsFromProto(create(JobSettingsSchema, { optimizer: 99 as Optimizer })))
      .toThrow(new SettingsError('optimizer', `99 is not a known value (known: ${OptimizerSchema.values.map((v) => v.number).join(', ')})`));
    expect(() => settingsFromProto(create(JobSettingsSchema, { schedule: 7 as Schedule }))).toThrow(/^schedule: 7 is not a known value/);
    const projected = create(JobSettingsSchema, { parameterization: { kind: { case: 'projected', value: { dims: 4, basis: 5 as Parameterization_Basis } } } });
    expect(() => settingsFromProto(projected)).toThrow(/^parameterization.projected.basis: 5 is not a known value/);
    const unknownCase = create(JobSettingsSchema);
    (unknownCase as unknown as { init: unknown }).init = create(InitializationSchema);
    (unknownCase.init!.kind as unknown) = { case: 'orthogonal', value: {} };
    expect(() => settingsFromProto(unknownCase)).toThrow('init: "orthogonal" is not a known case (known: random, zeros, mean, text, embedding)');
  });

  it('fills a beam check without its interval from the one default, and leaves zero values to the defaults', () => {
    const beam = settingsFromProto(create(JobSettingsSchema, { decoder: { beams: 4 } }));
    expect(beam.decode).toEqual({ kind: 'beam', beams: 4, every: 10 });
    const empty = storedInversionSettings(settingsFromProto(create(JobSettingsSchema)));
    expect(empty).toEqual(inversionDefaults);
  });

  it('reads an unset repetition penalty (every job stored before it existed) as 1, and echoes a set one', () => {
    expect(storedInversionSettings(settingsFromProto(create(JobSettingsSchema))).repetitionPenalty).toBe(1);
    expect(roundTrip(create(JobSettingsSchema)).repetitionPenalty).toBe(1);
    expect(roundTrip(create(JobSettingsSchema, { repetitionPenalty: 1.3 })).repetitionPenalty).toBe(1.3);
  });
});

describe('restart results read back from the store', () => {
  it('keep every run status, and refuse a record without one instead of resuming it as some other status', () => {
    for (const { number } of StatusSchema.values.filter((v) => v.number !== Status.UNSPECIFIED)) {
      const stored = create(RestartResultSchema, { restart: 2, status: number, embedding: { shape: [1, 2], values: [0.5, -1] } });
      const run = restartResultFromProto(stored);
      expect(restartResultToProto(run).status).toBe(number);
    }
    for (const status of [Status.UNSPECIFIED, 99]) {
      expect(() => restartResultFromProto(create(RestartResultSchema, { restart: 2, status })))
        .toThrow(`stored restart result 2: status ${status} is not the status of a finished run`);
    }
  });
});

describe('the converter tables, compiled with one entry removed', () => {
  // The real proto-convert.ts, type-checked by the TypeScript compiler with a line taken out as a proto change would
  // leave it: each mutant must fail to compile, naming the missing member.
  const file = path.join(here, '..', '..', 'server', 'service', 'proto-convert.ts');
  const source = fs.readFileSync(file, 'utf8');

  function diagnosticsWithout(line: string): string[] {
    expect(source, `proto-convert.ts has the line ${line}`).toContain(line);
    const mutant = source.replace(line, '');
    const options: ts.CompilerOptions = { strict: true, noEmit: true, module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, skipLibCheck: true };
    const host = ts.createCompilerHost(options);
    const read = host.getSourceFile.bind(host);
    host.getSourceFile = (name, language, ...rest) => (path.resolve(name) === file
      ? ts.createSourceFile(name, mutant, language)
      : read(name, language, ...rest));
    const program = ts.createProgram([file], options, host);
    return ts.getPreEmitDiagnostics(program, program.getSourceFile(file))
      .map((d) => ts.flattenDiagnosticMessageText(d.messageText, '\n'));
  }

  it('compiles as it is', () => {
    expect(diagnosticsWithout('')).toEqual([]);
  }, 60_000);

  it.each([
    ["  [Status.PATIENCE]: 'PATIENCE',\n", /Property '\[Status.PATIENCE\]' is missing/],
    ['  pca: Parameterization_Basis.PCA,\n', /Property 'pca' is missing/],
    ["  [Parameterization_Basis.PCA]: 'pca',\n", /Property '\[Parameterization_Basis.PCA\]' is missing/],
    ["  mean: () => ({ kind: 'mean' }),\n", /Property 'mean' is missing/],
    ['    repetitionPenalty: s.repetitionPenalty || undefined,\n', /Property 'repetitionPenalty' is missing/],
  ])('refuses the tables without %j', (line, message) => {
    expect(diagnosticsWithout(line).join('\n')).toMatch(message);
  }, 60_000);
});
