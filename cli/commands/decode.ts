// `recite decode FILE.safetensors`: the text a model produces after a saved embedding; `recite models`.
import Table from 'cli-table3';
import type { Command } from 'commander';
import { ModelState, ModelStateSchema } from '../../sdk/index.js';
import { readSafetensorsHeader, readTensorFloat32 } from '../../server/model/safetensors.js';
import { connectToServer, withServerOptions } from '../connection.js';
import type { ConnectionOptions } from '../connection.js';
import { printJsonLine, protoEnumName } from '../json-events.js';
import { positiveInteger } from '../options.js';

// Why a beam search can print another text than the one the embedding was found for, for `decode --help`.
const decoderHelp = `
Which decoder: by default the one the job's hit check used (invert --decode, saved in the file by invert --out;
greedy when the file does not say), for as many tokens as the target had, so decode prints the text the job
reported. A greedy hit means each target token was the most likely one given the tokens before it. A beam search
looks for the most likely whole sequence instead, and that can be another text: one whose first token is less
likely but whose later tokens make up for it. So --beams N on an embedding found with the greedy check may print
another text than the target, and the greedy decoder on an embedding found with a beam check may too.`;

interface DecodeFlags extends ConnectionOptions {
  tensor: string;
  maxTokens?: string;
  beams?: string;
  model?: string;
  json?: boolean;
}

export function registerDecodeCommands(program: Command): void {
  withServerOptions(program.command('decode')
    .description('decode the text a model produces after a prompt embedding saved by `invert --out`')
    .argument('<file>', 'safetensors file')
    .option('--tensor <name>', 'tensor in the file', 'embedding')
    .option('--max-tokens <n>', 'tokens to generate (default: the length of the target in the file, else 16)')
    .option('--beams <n>', '1: greedy; N > 1: beam search with N beams (default: the decoder of the job\'s hit check)')
    .option('--model <name>', 'model name on the server (default: the server\'s default)')
    .option('--json', 'print {ids, text, decoder, maxTokens} as JSON')
    .addHelpText('after', decoderHelp))
    .action(async (file: string, options: DecodeFlags) => {
      const header = readSafetensorsHeader(file);
      const info = header.tensors.find((t) => t.name === options.tensor);
      if (!info) {
        throw new Error(`${file}: no tensor "${options.tensor}"; it holds ${header.tensors.map((t) => t.name).join(', ')}`);
      }
      const saved = savedDecoder(file, header.metadata);
      const beams = options.beams !== undefined ? positiveInteger('--beams', options.beams) : saved.beams;
      const maxTokens = options.maxTokens !== undefined ? positiveInteger('--max-tokens', options.maxTokens) : saved.tokens ?? 16;
      const decoder = beams > 1 ? `beam:${beams}` : 'greedy';
      const { client } = connectToServer(options);
      const out = await client.decode({ shape: info.shape, values: readTensorFloat32(info) }, {
        maxTokens,
        beams,
        ...(options.model ? { model: options.model } : {}),
      });
      if (options.json) {
        printJsonLine({ ids: out.ids, text: out.text, decoder, maxTokens });
        return;
      }
      const why = options.beams !== undefined ? 'as asked' : saved.from ? `the job's hit check, from ${file}` : 'the default';
      process.stderr.write(`recite decode: ${beams > 1 ? `beam search, ${beams} beams` : 'greedy'} (${why}), ${maxTokens} tokens\n`);
      process.stdout.write(`${out.text}\n`);
    });

  withServerOptions(program.command('models')
    .description('list the models a server serves')
    .option('--json', 'one JSON object per model'))
    .action(async (options: ConnectionOptions & { json?: boolean }) => {
      const { client } = connectToServer(options);
      const models = await client.listModels();
      if (options.json) {
        for (const m of models) {
          process.stdout.write(`${JSON.stringify({ name: m.name, state: protoEnumName(ModelStateSchema, m.state), provider: m.provider, nEmbd: m.nEmbd, nLayer: m.nLayer, nHead: m.nHead, nPositions: m.nPositions, vocabSize: m.vocabSize, isDefault: m.isDefault, error: m.error })}\n`);
        }
        return;
      }
      const table = new Table({ head: ['model', 'state', 'provider', 'C', 'layers', 'heads', 'context', 'default'], style: { head: [], border: [] } });
      for (const m of models) {
        table.push([m.name, ModelState[m.state], m.provider, m.nEmbd, m.nLayer, m.nHead, m.nPositions, m.isDefault ? 'yes' : '']);
      }
      process.stdout.write(`${table.toString()}\n`);
    });
}

/** The hit check's decoder and the target's length as `invert --out` saved them (greedy and unknown without). */
function savedDecoder(file: string, metadata: Record<string, string>): { beams: number; tokens?: number; from: boolean } {
  const decoder = metadata.decoder;
  let beams = 1;
  if (decoder !== undefined) {
    const match = /^(?:greedy|beam:(\d+))$/.exec(decoder);
    if (!match) throw new Error(`${file}: the saved decoder "${decoder}" is neither greedy nor beam:N`);
    beams = match[1] !== undefined ? Number(match[1]) : 1;
  }
  let tokens: number | undefined;
  try {
    const ids: unknown = metadata.target_ids !== undefined ? JSON.parse(metadata.target_ids) : undefined;
    if (Array.isArray(ids) && ids.length > 0) tokens = ids.length;
  } catch {
    // Not a file of invert's: no target length to go by.
  }
  return { beams, ...(tokens !== undefined ? { tokens } : {}), from: decoder !== undefined };
}
