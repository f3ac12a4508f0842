// The figures of a trained model's card: validation perplexity beside an interpolated Kneser-Ney bigram on the
// same predicted tokens, the loss curve from the run's log, samples, and the model file's sha256.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { TopLevelSpec } from 'vega-lite';
import { loadCheckpoint } from '../model/checkpoint.js';
import { loadGpt2 } from '../model/gpt2-session.js';
import { trainableWeights } from '../model/gpt2-training-graph.js';
import { createGpt2Tokenizer } from '../model/tokenizer.js';
import { createSeededRandom } from '../util/seeded-random.js';
import { renderVegaLiteSvg } from '../util/vega-svg.js';
import { readCorpusManifest, readCorpusSplit } from './corpus.js';
import { fitKneserNeyBigram } from './kneser-ney.js';
import { evaluateWindows, openTrainingSession } from './trainer.js';
import type { TrainingLogLine } from './trainer.js';

/** What the model card reports, as measured. */
export interface ModelEvaluation {
  model: string;
  modelFileSha256: string;
  parameters: number;
  validation: {
    tokensPredicted: number;
    modelNll: number;
    modelPerplexity: number;
    bigramNll: number;
    bigramPerplexity: number;
    bigramDiscount: number;
    /** modelPerplexity / bigramPerplexity. */
    perplexityRatio: number;
  };
  samples: { prompt: string; continuation: string }[];
  sampling: { temperature: number; topK: number; tokens: number; seed: number };
  corpus: ReturnType<typeof readCorpusManifest>;
}

const samplePrompts = ['It is a truth universally acknowledged', 'And the LORD said unto Moses,',
  'The jury said it did find that', 'She was not'];
const sampling = { temperature: 0.8, topK: 40, tokens: 40, seed: 1 };

/** Measure the model in `modelDir` on the corpus's validation split and draw samples. */
export async function evaluateModel(modelDir: string, corpusDir: string): Promise<ModelEvaluation> {
  const checkpoint = loadCheckpoint(modelDir);
  const config = checkpoint.config;
  const S = config.nPositions;
  const weights = new Map([...trainableWeights(config).keys()].map((name) => [name, checkpoint.readFloat32(name)]));
  const validation = readCorpusSplit(corpusDir, 'validation');
  const session = await openTrainingSession(config);
  let evaluation;
  try {
    evaluation = await evaluateWindows(session, { config, weights }, validation, S, Infinity);
  } finally {
    await session.release();
  }
  // The bigram predicts the same tokens (stream indices 1 .. n) from the token before each.
  const bigram = fitKneserNeyBigram(readCorpusSplit(corpusDir, 'train'), config.vocabSize);
  let bigramNll = 0;
  for (let i = 1; i <= evaluation.tokens; i++) bigramNll -= bigram.logProb(validation[i - 1]!, validation[i]!);
  bigramNll /= evaluation.tokens;
  const weightsFile = path.join(modelDir, 'model.safetensors');
  return {
    model: path.basename(modelDir),
    modelFileSha256: createHash('sha256').update(fs.readFileSync(weightsFile)).digest('hex'),
    parameters: [...weights.values()].reduce((n, w) => n + w.length, 0),
    validation: {
      tokensPredicted: evaluation.tokens,
      modelNll: evaluation.meanNll,
      modelPerplexity: Math.exp(evaluation.meanNll),
      bigramNll,
      bigramPerplexity: Math.exp(bigramNll),
      bigramDiscount: bigram.discount,
      perplexityRatio: Math.exp(evaluation.meanNll - bigramNll),
    },
    samples: await drawSamples(modelDir),
    sampling,
    corpus: readCorpusManifest(corpusDir),
  };
}

/** Continue the card's prompts by seeded top-k sampling at a temperature. */
// The prompt's tokens enter as the prompt embedding (their wte rows, to
// which the graph adds positions), so this is ordinary text continuation.
export async function drawSamples(modelDir: string): Promise<{ prompt: string; continuation: string }[]> {
  const model = await loadGpt2(modelDir, 'cpu');
  const tokenizer = createGpt2Tokenizer();
  const { nEmbd: C } = model.checkpoint.config;
  const wte = model.checkpoint.readFloat32('wte.weight');
  const random = createSeededRandom(sampling.seed);
  try {
    const samples = [];
    for (const promptText of samplePrompts) {
      const promptIds = tokenizer.encode(promptText);
      const prompt = new Float32Array(promptIds.length * C);
      promptIds.forEach((id, p) => prompt.set(wte.subarray(id * C, (id + 1) * C), p * C));
      const generated: number[] = [];
      for (let step = 0; step < sampling.tokens; step++) {
        const logprobs = await model.decode.nextLogprobs(prompt, promptIds.length, [generated]);
        generated.push(sampleTopK(logprobs, sampling.topK, sampling.temperature, random.uniform()));
      }
      samples.push({ prompt: promptText, continuation: tokenizer.decode(generated) });
    }
    return samples;
  } finally {
    await model.release();
  }
}

function sampleTopK(logprobs: Float32Array, k: number, temperature: number, u: number): number {
  const top = Array.from(logprobs.keys()).sort((a, b) => logprobs[b]! - logprobs[a]!).slice(0, k);
  const weights = top.map((id) => Math.exp((logprobs[id]! - logprobs[top[0]!]!) / temperature));
  let r = u * weights.reduce((a, b) => a + b, 0);
  for (let i = 0; i < top.length; i++) {
    r -= weights[i]!;
    if (r <= 0) return top[i]!;
  }
  return top[top.length - 1]!;
}

/** Draw the loss curve (training loss, validation loss, the bigram's validation loss) as an SVG document. */
export async function renderLossCurve(log: readonly (TrainingLogLine & { phase?: number })[], bigramNll: number):
  Promise<string> {
  // Each phase's validation points are their own series: phases may have evaluated different windows.
  const values = [
    ...log.map((line) => ({ tokens: line.tokens / 1e6, nll: line.loss, series: 'training loss (batch)' })),
    ...log.filter((line) => line.validationLoss !== undefined).map((line) => ({
      tokens: line.tokens / 1e6,
      nll: line.validationLoss!,
      series: `validation loss (8 k tokens${line.phase === undefined ? '' : `, phase ${line.phase}`})`,
    })),
  ];
  const lastTokens = Math.max(...values.map((v) => v.tokens));
  values.push({ tokens: 0, nll: bigramNll, series: 'Kneser-Ney bigram, validation' },
    { tokens: lastTokens, nll: bigramNll, series: 'Kneser-Ney bigram, validation' });
  const spec: TopLevelSpec = {
    $schema: 'https://vega.github.io/schema/vega-lite/v6.json',
    title: { text: 'recite-english: loss while training', subtitle: 'mean next-token NLL in nats', anchor: 'start' },
    width: 560,
    height: 320,
    background: 'white',
    padding: 12,
    data: { values },
    mark: { type: 'line', strokeWidth: 2 },
    encoding: {
      x: { field: 'tokens', type: 'quantitative', title: 'training tokens seen (millions)' },
      y: { field: 'nll', type: 'quantitative', title: 'NLL (nats per token)', scale: { zero: false, domain: [3, 11] } },
      color: { field: 'series', type: 'nominal', title: null, scale: { scheme: 'dark2' }, legend: { orient: 'top-right', labelLimit: 400 } },
      strokeDash: { field: 'series', type: 'nominal' },
    },
    config: { font: 'sans-serif', axis: { grid: true, gridOpacity: 0.4 } },
  };
  return renderVegaLiteSvg(spec);
}
