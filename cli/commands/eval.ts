// `recite eval`: run fixed cases through the gradient and decode graphs and write every number, for comparison
// with a reference (the fixture's reference.json has the same shape).
import fs from 'node:fs';
import type { Command } from 'commander';
import { evaluateCases, parseEvalCases } from '../../server/engine/evaluate.js';
import type { EvalCaseResult } from '../../server/engine/evaluate.js';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import { parseDeviceRequest } from '../../server/model/devices.js';
import { loadGpt2 } from '../../server/model/gpt2-session.js';
import { printJsonLine } from '../json-events.js';

export function registerEvalCommand(program: Command): void {
  program.command('eval')
    .description('compute NLL, gradient, argmax, greedy and beam-4 ids for the cases of a reference-shaped JSON file')
    .requiredOption('--model <dir>', 'GPT-2 folder (config.json + model.safetensors) or a built-in name (tiny)')
    .requiredOption('--cases <file>', 'JSON with cases[] of {name, prompt (B,P,C), target_ids (B,T)}')
    .option('--out <file>', 'where to write the results (JSON, the reference\'s shape); required without --json')
    .option('--device <device>', 'cpu | webgpu | cuda | auto', 'auto')
    .option('--json', 'print one JSON object per case {model, provider, providerFallbacks, case: {name, nllSum, ...}}')
    .action(async (options: { model: string; cases: string; out?: string; device: string; json?: boolean }) => {
      if (options.out === undefined && !options.json) {
        throw new Error('eval: --out is missing; give --out FILE for the results, or --json to print them');
      }
      const device = parseDeviceRequest(options.device);
      const model = await loadGpt2(resolveModelDir(options.model), device);
      try {
        const cases = parseEvalCases(JSON.parse(fs.readFileSync(options.cases, 'utf8')), model.checkpoint.config.nEmbd);
        const results = await evaluateCases(model, cases);
        const out = {
          model: model.checkpoint.dir,
          provider: model.provider,
          provider_fallbacks: model.fallbacks,
          cases: results,
        };
        if (options.out !== undefined) {
          fs.writeFileSync(options.out, `${JSON.stringify(out)}\n`);
          process.stderr.write(`recite eval: ${results.length} cases on ${model.provider} -> ${options.out}\n`);
        }
        if (options.json) {
          for (const result of results) {
            printJsonLine({ model: out.model, provider: out.provider, providerFallbacks: out.provider_fallbacks,
              case: camelCaseResult(result) });
          }
        }
      } finally {
        await model.release();
      }
    });
}

/** The JSON-lines form of a case: the CLI's camelCase keys (the --out file keeps the reference's snake_case). */
function camelCaseResult(result: EvalCaseResult): Record<string, unknown> {
  return {
    name: result.name,
    nllPerToken: result.nll_per_token,
    nllSum: result.nll_sum,
    gradPrompt: result.grad_prompt,
    argmaxIds: result.argmax_ids,
    greedyIds: result.greedy_ids,
    beam4Ids: result.beam4_ids,
  };
}
