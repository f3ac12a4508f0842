// `recite score TEXT...`: how likely a model finds each text (per-token NLL, bits per token and per character,
// perplexity), for comparing texts and settings. Texts from the arguments or a file (one a line).
import fs from 'node:fs';
import Table from 'cli-table3';
import type { Command } from 'commander';
import { defaultModelName } from '../../server/model/builtin-models.js';
import { openConnection, withServerOptions } from '../connection.js';
import type { LocalOrRemoteOptions } from '../connection.js';

interface ScoreCommandOptions extends LocalOrRemoteOptions {
  file?: string;
  json?: boolean;
  tokens?: boolean;
}

export function registerScoreCommand(program: Command): void {
  withServerOptions(program.command('score')
    .description('score texts under a model: per-token NLL (the first token after <|endoftext|>), bits per token and ' +
      'per character, perplexity')
    .argument('[texts...]', 'texts to score')
    .option('--file <file>', 'score each non-empty line of this file')
    .option('--model <name|dir>', 'a model the server serves; in this process a built-in name, a folder or NAME=DIR ' +
      `(default ${defaultModelName})`)
    .option('--device <device>', 'in this process: cpu | webgpu | cuda | auto', 'auto')
    .option('--tokens', 'also print each token with its NLL')
    .option('--json', 'print one JSON object per text'), false)
    .action(async (args: string[], options: ScoreCommandOptions) => {
      const texts = [...args, ...(options.file ? readLines(options.file) : [])];
      if (texts.length === 0) throw new Error('nothing to score: give TEXT arguments or --file FILE');
      const connection = await openConnection(options);
      try {
        const model = connection.model;
        const scores = await connection.client.score(texts, model ? { model } : {});
        if (options.json) {
          scores.forEach((s, i) => process.stdout.write(`${JSON.stringify({
            text: texts[i], tokens: s.ids.length, nll_sum: s.nllSum, bits_per_token: s.bitsPerToken,
            bits_per_char: s.bitsPerChar, perplexity: s.perplexity, ids: s.ids, nll: s.nll,
          })}\n`));
          return;
        }
        const table = new Table({ head: ['text', 'tokens', 'NLL (nats)', 'bits/token', 'bits/char', 'perplexity'],
          style: { head: [], border: [] }, colAligns: ['left', 'right', 'right', 'right', 'right', 'right'] });
        scores.forEach((s, i) => table.push([ellipsis(texts[i]!, 48), s.ids.length, s.nllSum.toFixed(2),
          s.bitsPerToken.toFixed(3), s.bitsPerChar.toFixed(3), s.perplexity.toFixed(1)]));
        process.stdout.write(`${table.toString()}\n`);
        if (options.tokens) {
          scores.forEach((s, i) => process.stdout.write(`${JSON.stringify(texts[i])}: ${s.tokens.map((t, k) =>
            `${JSON.stringify(t)} ${s.nll[k]!.toFixed(2)}`).join(' | ')}\n`));
        }
      } finally {
        await connection.close();
      }
    });
}

function readLines(file: string): string[] {
  return fs.readFileSync(file, 'utf8').split('\n').map((line) => line.trim()).filter((line) => line.length > 0);
}

function ellipsis(text: string, width: number): string {
  return text.length <= width ? text : `${text.slice(0, width - 1)}…`;
}
