// `recite bench`: time the gradient graph against the same-run MatMul peak; progress on stderr, the table (or the
// JSON with `--json -`) on stdout.
import fs from 'node:fs';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import type { BenchModelName, GraphBenchEvent, GraphBenchResult } from '../../server/bench/graph-bench.js';
import { benchModelNames, graphBenchDefaults, runGraphBench } from '../../server/bench/graph-bench.js';
import { defaultRandomGpt2Dir } from '../../server/bench/random-gpt2.js';
import { parseDeviceRequest } from '../../server/model/execution-provider.js';

interface BenchCommandOptions {
  device: string;
  models: BenchModelName[];
  batches: number[];
  lengths: number[];
  minRuns: number;
  minSeconds: number;
  json?: string;
  cacheDir?: string;
}

/** Register `recite bench`: parse the flags, run runGraphBench, print the table or the JSON. */
export function registerBenchCommand(program: Command): void {
  program.command('bench')
    .description('time forward + backward runs of the gradient graph and compare with one large MatMul on the same ' +
      'execution provider')
    .option('--device <device>', 'cpu | webgpu | cuda | auto', graphBenchDefaults.device)
    .addOption(new Option('--models <list>', `comma-separated: ${benchModelNames.join(', ')}`).argParser(parseModels)
      .default([...graphBenchDefaults.models], graphBenchDefaults.models.join(',')))
    .addOption(new Option('--batches <list>', 'batch sizes B, comma-separated').argParser(parseIntegers('--batches'))
      .default([...graphBenchDefaults.batches], graphBenchDefaults.batches.join(',')))
    .addOption(new Option('--lengths <list>', 'target lengths T in tokens, comma-separated')
      .argParser(parseIntegers('--lengths'))
      .default([...graphBenchDefaults.targetLengths], graphBenchDefaults.targetLengths.join(',')))
    .option('--min-runs <n>', 'timed runs per point at least, after one warm-up run', parseNumber('--min-runs'),
      graphBenchDefaults.minRuns)
    .option('--min-seconds <s>', 'seconds of timed runs per point at least', parseNumber('--min-seconds'),
      graphBenchDefaults.minSeconds)
    .option('--json <file>', 'also write every figure as JSON to <file>; "-" writes it to stdout instead of the table')
    .option('--cache-dir <dir>', `folder of the generated GPT-2 124M random checkpoint (default ${defaultRandomGpt2Dir()})`)
    .action(async (options: BenchCommandOptions) => {
      const result = await runGraphBench({
        device: parseDeviceRequest(options.device),
        models: options.models,
        batches: options.batches,
        targetLengths: options.lengths,
        minRuns: options.minRuns,
        minSeconds: options.minSeconds,
        ...(options.cacheDir === undefined ? {} : { cacheDir: options.cacheDir }),
        onProgress: (event) => process.stderr.write(`recite bench: ${describeEvent(event)}\n`),
      });
      const json = `${JSON.stringify(result, null, 2)}\n`;
      if (options.json === '-') {
        process.stdout.write(json);
        return;
      }
      process.stdout.write(`${formatBenchReport(result)}\n`);
      if (options.json !== undefined) {
        fs.writeFileSync(options.json, json);
        process.stderr.write(`recite bench: figures written to ${options.json}\n`);
      }
    });
}

/** Render the header line and the table of a bench result. */
export function formatBenchReport(result: GraphBenchResult): string {
  const peak = result.matmulPeak;
  const passedOver = result.fallbacks.length === 0 ? '' : `; passed over ${result.fallbacks.map((f) => f.provider).join(', ')}`;
  const header = `provider ${result.provider} (asked ${result.device}${passedOver}) | ` +
    `matmul peak (${peak.shape.m}, ${peak.shape.k}) x (${peak.shape.k}, ${peak.shape.n}) float32: ` +
    `${peak.worstGflopPerSecond.toFixed(1)} to ${peak.bestGflopPerSecond.toFixed(1)} GFLOP/s over the points ` +
    `(fastest run ${peak.bestRunGflopPerSecond.toFixed(1)}) | ` +
    `peak RSS ${result.peakRssMiB.toFixed(0)} MiB | ${result.host.cpus} CPUs, ${result.host.cpuModel} | ` +
    `${result.wallSeconds.toFixed(0)} s`;
  const table = new Table({
    head: ['model', 'B', 'T', 'ms/run', 'GFLOP/s', 'matmul GFLOP/s', '% of matmul peak', '% fastest runs', 'job-it/s'],
    colAligns: ['left', 'right', 'right', 'right', 'right', 'right', 'right', 'right', 'right'],
    style: { head: [], border: [] }, // no colour codes: the table is pasted into the README
    chars: { mid: '', 'left-mid': '', 'mid-mid': '', 'right-mid': '' }, // no rule between rows
  });
  for (const p of result.points) {
    table.push([p.model, p.batch, p.targetLength, p.times.medianMs.toFixed(1), p.gflopPerSecond.toFixed(1),
      p.matmulGflopPerSecond.toFixed(1), (100 * p.fractionOfPeak).toFixed(1), (100 * p.bestFractionOfPeak).toFixed(1),
      p.jobIterationsPerSecond.toFixed(1)]);
  }
  const note = 'ms/run, GFLOP/s, job-it/s: median run. matmul GFLOP/s: the peak MatMul timed between the same point\'s ' +
    'graph runs (median over the runs of the MatMul times just before and after each). % of matmul peak = GFLOP/s / ' +
    'matmul GFLOP/s; % fastest runs = the same ratio from the fastest graph run and the fastest MatMul run of the point.';
  return `${header}\n${table.toString()}\n${note}`;
}

function describeEvent(event: GraphBenchEvent): string {
  switch (event.kind) {
    case 'matmul': {
      const passedOver = event.fallbacks.map((f) => `${f.provider} (${f.reason})`).join('; ');
      return `peak MatMul open on ${event.provider}${passedOver ? `; passed over ${passedOver}` : ''}`;
    }
    case 'generate':
      return `${event.model}: writing a random GPT-2 124M checkpoint (~500 MB, once) to ${event.dir}`;
    case 'model':
      return `${event.model}: graphs open on ${event.provider} in ${event.loadSeconds.toFixed(1)} s (${event.dir})`;
    case 'point': {
      const p = event.point;
      return `${p.model} B=${p.batch} T=${p.targetLength}: ${p.times.medianMs.toFixed(1)} ms/run over ` +
        `${p.times.runs} runs, ${p.gflopPerSecond.toFixed(1)} GFLOP/s, matmul ${p.matmulGflopPerSecond.toFixed(1)} ` +
        `GFLOP/s (${(100 * p.fractionOfPeak).toFixed(1)}%), ${p.jobIterationsPerSecond.toFixed(1)} job-it/s`;
    }
  }
}

function parseModels(value: string): BenchModelName[] {
  const names = splitList(value);
  const unknown = names.find((n) => !(benchModelNames as readonly string[]).includes(n));
  if (unknown !== undefined) {
    throw new InvalidArgumentError(`"${unknown}" is not one of ${benchModelNames.join(', ')}.`);
  }
  return names as BenchModelName[];
}

function parseIntegers(flag: string): (value: string) => number[] {
  return (value) => splitList(value).map((item) => {
    const n = Number(item);
    if (!Number.isSafeInteger(n) || n < 1) throw new InvalidArgumentError(`${flag}: "${item}" is not an integer ≥ 1.`);
    return n;
  });
}

function parseNumber(flag: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || n < 0) {
      throw new InvalidArgumentError(`${flag}: "${value}" is not a number ≥ 0.`);
    }
    return n;
  };
}

function splitList(value: string): string[] {
  return value.split(',').map((s) => s.trim()).filter(Boolean);
}
