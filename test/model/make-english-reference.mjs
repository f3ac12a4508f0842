// Regenerate test/fixtures/english-reference.json: inversion cases for the built-in english model (seeded prompts,
// English targets), with the outputs of the independent PyTorch implementation (torch_reference.py, which first
// reproduces the tiny fixture's transformers outputs) and the sha256 of the model file they were computed for.
//
//   npm run build && node test/model/make-english-reference.mjs
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveModelDir } from '../../dist/server/model/builtin-models.js';
import { loadCheckpoint } from '../../dist/server/model/checkpoint.js';
import { createGpt2Tokenizer } from '../../dist/server/model/tokenizer.js';
import { randomNormal } from '../../dist/server/util/seeded-random.js';

const modelDir = resolveModelDir('english');
const checkpoint = loadCheckpoint(modelDir);
const C = checkpoint.config.nEmbd;
const wte = checkpoint.readFloat32('wte.weight');
const tokenizer = createGpt2Tokenizer();
let sumSquares = 0;
for (const x of wte) sumSquares += x * x;
const std = Math.sqrt(sumSquares / wte.length);

const rows = (flat, B, P) => Array.from({ length: B }, (_, b) =>
  Array.from({ length: P }, (_, p) => Array.from(flat.subarray((b * P + p) * C, (b * P + p + 1) * C))));
const pad = (ids, T) => [...ids, ...Array(T - ids.length).fill(ids[ids.length - 1])];

const apples = tokenizer.encode('does it make sense to compare apples and oranges?');
const austen = tokenizer.encode(' It is a truth universally acknowledged, that a single man');
const T = Math.max(apples.length, austen.length);
const eos = wte.subarray(50256 * C, 50257 * C);
const cases = [
  // Two English targets (padded to one length with their last token, so every position is real) after random
  // prompts of 3 vectors at the embeddings' scale.
  { name: 'random-prompts-english-targets', B: 2, P: 3, T, prompt: rows(randomNormal(2 * 3 * C, std, 7), 2, 3),
    target_ids: [pad(apples, T), pad(austen, T)] },
  // The Score RPC's case: the end-of-text embedding as the one prompt vector.
  { name: 'end-of-text-prompt', B: 1, P: 1, T: apples.length, prompt: [[Array.from(eos)]], target_ids: [apples] },
];

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-english-ref-'));
fs.writeFileSync(path.join(dir, 'cases.json'), JSON.stringify({ cases }));
execFileSync('/usr/bin/python3', ['test/model/torch_reference.py', 'inversion', modelDir, path.join(dir, 'cases.json'),
  path.join(dir, 'out.json')], { stdio: 'inherit' });
const out = JSON.parse(fs.readFileSync(path.join(dir, 'out.json'), 'utf8'));
const sha256 = createHash('sha256').update(fs.readFileSync(path.join(modelDir, 'model.safetensors'))).digest('hex');
fs.writeFileSync('test/fixtures/english-reference.json', `${JSON.stringify({
  about: 'Inversion cases for the built-in english model and the outputs of test/model/torch_reference.py (plain ' +
    'PyTorch, checked against the tiny fixture\'s transformers outputs first). Regenerate with ' +
    'node test/model/make-english-reference.mjs after npm run build.',
  implementation: out.implementation,
  model_sha256: sha256,
  cases: cases.map((c, i) => ({ ...c, ...out.results[i] })),
})}\n`);
fs.rmSync(dir, { recursive: true, force: true });
console.log(`test/fixtures/english-reference.json: ${cases.length} cases for model.safetensors ${sha256}`);
