// `recite model fetch NAME`: download a GPT-2 checkpoint from the Hugging Face hub into the models folder.
import type { Command } from 'commander';
import { fetchModel } from '../../server/model/hub-download.js';
import type { FetchProgress } from '../../server/model/hub-download.js';
import { printJsonLine } from '../json-events.js';

interface ModelFetchOptions {
  dir?: string;
  revision: string;
  hubUrl?: string;
  json?: boolean;
}

const liveRedrawMs = 100; // progress line refresh on a terminal
const loggedPercentStep = 10; // progress lines per file when stderr is a log, not a terminal
const bigFileBytes = 1_000_000; // files below this get one line when done, no running count

/**
 * Register `model fetch` under a `model` command group (created here, or reused when another module made it).
 * Exit status 0 once the folder is downloaded and loads, 1 with a one-line error otherwise.
 */
export function registerModelFetchCommand(program: Command): void {
  const model = program.commands.find((c) => c.name() === 'model') ??
    program.command('model').description('manage GPT-2 checkpoints');
  model.command('fetch')
    .description('download a GPT-2 checkpoint (config.json, model.safetensors, tokenizer files) from the Hugging Face ' +
      'hub and check that it loads; prints the folder on stdout')
    .argument('<name>', 'hub repo id, e.g. gpt2, distilgpt2, openai-community/gpt2-medium')
    .option('--dir <dir>', `destination folder (default: ${'$'}RECITE_MODELS_DIR/NAME, else ~/.cache/recite/models/NAME)`)
    .option('--revision <rev>', 'branch, tag or commit', 'main')
    .option('--hub-url <url>', `hub or mirror to download from (default: ${'$'}HF_ENDPOINT, else https://huggingface.co)`)
    .option('--json', 'print the result as one JSON object {name, dir, commit, hubUrl, files, bytes, config} instead of the folder')
    .action(async (name: string, options: ModelFetchOptions) => {
      process.exitCode = await modelFetch(name, options);
    });
}

async function modelFetch(name: string, options: ModelFetchOptions): Promise<number> {
  const progress = createProgressPrinter(process.stderr);
  try {
    const result = await fetchModel({
      name,
      dir: options.dir,
      revision: options.revision,
      hubUrl: options.hubUrl,
      onProgress: progress,
    });
    const total = result.files.reduce((sum, f) => sum + f.bytes, 0);
    const c = result.checkpoint.config;
    process.stderr.write(`${name}: ${result.files.length} files, ${formatBytes(total)} from ${result.hubUrl} ` +
      `(commit ${result.commit.slice(0, 12)}); loads: n_embd ${c.nEmbd}, ${c.nLayer} layers, ${c.nHead} heads, ` +
      `${c.nPositions} positions, vocab ${c.vocabSize}\n`);
    if (options.json) {
      printJsonLine({ name, dir: result.dir, commit: result.commit, hubUrl: result.hubUrl, files: result.files,
        bytes: total, config: c });
    } else {
      process.stdout.write(`${result.dir}\n`);
    }
    return 0;
  } catch (error) {
    progress.interrupt();
    const message = error instanceof Error ? error.message : String(error);
    process.stderr.write(`recite model fetch: ${message}\n`);
    return 1;
  }
}

type ProgressPrinter = ((p: FetchProgress) => void) & { interrupt(): void };

/** Print download progress: a redrawn line on a terminal, a line per 10% in a log. */
function createProgressPrinter(stream: NodeJS.WriteStream): ProgressPrinter {
  const live = stream.isTTY === true;
  let lastDraw = 0;
  let lastPercent = -1;
  let started = 0;
  let drawn = false;
  const line = (p: FetchProgress) => {
    const seconds = Math.max((performance.now() - started) / 1000, 1e-3);
    const percent = p.totalBytes > 0 ? Math.floor((100 * p.bytes) / p.totalBytes) : 100;
    return `${p.file}  ${formatBytes(p.bytes)} / ${formatBytes(p.totalBytes)}  ${percent}%  ` +
      `${formatBytes(p.bytes / seconds)}/s`;
  };
  const printer = (p: FetchProgress) => {
    if (started === 0) started = performance.now();
    if (p.totalBytes < bigFileBytes) {
      if (p.done) stream.write(`${p.file}  ${formatBytes(p.totalBytes)}\n`);
      return;
    }
    if (live) {
      const now = performance.now();
      if (!p.done && now - lastDraw < liveRedrawMs) return;
      lastDraw = now;
      stream.write(`\r\x1b[2K${line(p)}${p.done ? '\n' : ''}`);
      drawn = !p.done;
    } else {
      const step = Math.floor((100 * p.bytes) / p.totalBytes / loggedPercentStep) * loggedPercentStep;
      if (step > lastPercent) stream.write(`${line(p)}\n`);
      lastPercent = p.done ? -1 : Math.max(lastPercent, step);
    }
    if (p.done) started = 0;
  };
  return Object.assign(printer, {
    interrupt() {
      if (drawn) stream.write('\n');
      drawn = false;
    },
  });
}

function formatBytes(bytes: number): string {
  if (bytes < 1000) return `${Math.round(bytes)} B`;
  const units = ['kB', 'MB', 'GB', 'TB'];
  let value = bytes / 1000;
  let unit = 0;
  while (value >= 1000 && unit < units.length - 1) {
    value /= 1000;
    unit++;
  }
  return `${value.toFixed(value < 10 ? 2 : 1)} ${units[unit]}`;
}
