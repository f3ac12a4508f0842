// A model as the inversion engine sees it: the two graphs, the tokenizer and the token-embedding statistics.
import type { Checkpoint } from '../model/checkpoint.js';
import type { DeviceRequest, ProviderFallback } from '../model/execution-provider.js';
import type { GraphPrecision } from '../model/precision.js';
import type { GradientBatch, GradientResult } from '../model/gpt2-session.js';
import { loadGpt2 } from '../model/gpt2-session.js';
import type { Gpt2Tokenizer } from '../model/tokenizer.js';
import { createGpt2Tokenizer } from '../model/tokenizer.js';
import type { NextTokenModel } from './decoders.js';
import { TokenEmbeddings } from './token-embeddings.js';

export interface EngineModel {
  name: string;
  checkpoint: Checkpoint;
  gradient: { run(batch: GradientBatch): Promise<GradientResult> };
  decode: NextTokenModel;
  provider: string;
  /** Providers that `auto` passed over before `provider`, each with the reason. */
  fallbacks: ProviderFallback[];
  tokenizer: Gpt2Tokenizer;
  embeddings: TokenEmbeddings;
  release(): Promise<void>;
}

/** Load a checkpoint folder for the engine on `device` with graphs at `precision`, under the display name `name`. */
export async function loadEngineModel(name: string, dir: string, device: DeviceRequest = 'auto',
  precision: GraphPrecision = 'fp32'): Promise<EngineModel> {
  const model = await loadGpt2(dir, device, precision);
  const embeddings = TokenEmbeddings.fromCheckpoint(model.checkpoint);
  return {
    name,
    checkpoint: model.checkpoint,
    gradient: model.gradient,
    decode: model.decode,
    provider: model.provider,
    fallbacks: model.fallbacks,
    tokenizer: createGpt2Tokenizer(),
    embeddings,
    release: async () => {
      await embeddings.release();
      await model.release();
    },
  };
}
