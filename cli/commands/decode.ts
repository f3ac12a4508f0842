// `recite decode FILE.safetensors`: the text a model produces after a saved embedding; `recite models`.
import Table from 'cli-table3';
import type { Command } from 'commander';
import { ModelState } from '../../sdk/index.js';
import { readSafetensorsHeader, readTensorFloat32 } from '../../server/model/safetensors.js';
import { connectToServer, withServerOptions } from '../connection.js';
import type { ConnectionOptions } from '../connection.js';
import { positiveInteger } from '../options.js';

export function registerDecodeCommands(program: Command): void {
  withServerOptions(program.command('decode')
    .description('decode the text a model produces after a prompt embedding saved by `invert --out`')
    .argument('<file>', 'safetensors file')
    .option('--tensor <name>', 'tensor in the file', 'embedding')
    .option('--max-tokens <n>', 'tokens to generate', '16')
    .option('--beams <n>', '1: greedy; N > 1: beam search', '1')
    .option('--model <name>', 'model name on the server (default: the server\'s default)')
    .option('--json', 'print {ids, text} as JSON'))
    .action(async (file: string, options: ConnectionOptions & { tensor: string; maxTokens: string; beams: string; model?: string; json?: boolean }) => {
      const header = readSafetensorsHeader(file);
      const info = header.tensors.find((t) => t.name === options.tensor);
      if (!info) {
        throw new Error(`${file}: no tensor "${options.tensor}"; it holds ${header.tensors.map((t) => t.name).join(', ')}`);
      }
      const { client } = connectToServer(options);
      const out = await client.decode({ shape: info.shape, values: readTensorFloat32(info) }, {
        maxTokens: positiveInteger('--max-tokens', options.maxTokens),
        beams: positiveInteger('--beams', options.beams),
        ...(options.model ? { model: options.model } : {}),
      });
      process.stdout.write(options.json ? `${JSON.stringify({ ids: out.ids, text: out.text })}\n` : `${out.text}\n`);
    });

  withServerOptions(program.command('models')
    .description('list the models a server serves')
    .option('--json', 'one JSON object per model'))
    .action(async (options: ConnectionOptions & { json?: boolean }) => {
      const { client } = connectToServer(options);
      const models = await client.listModels();
      if (options.json) {
        for (const m of models) {
          process.stdout.write(`${JSON.stringify({ name: m.name, state: ModelState[m.state], provider: m.provider, nEmbd: m.nEmbd, nLayer: m.nLayer, nHead: m.nHead, nPositions: m.nPositions, vocabSize: m.vocabSize, isDefault: m.isDefault, error: m.error })}\n`);
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
