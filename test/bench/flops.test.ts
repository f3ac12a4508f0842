import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import { countGradientRunFlops } from '../../server/bench/flops.js';
import { resolveModelDir } from '../../server/model/builtin-models.js';
import { loadCheckpoint } from '../../server/model/checkpoint.js';
import { buildGradientGraph } from '../../server/model/gpt2-graph.js';
import { GradientSession } from '../../server/model/gpt2-session.js';
import { gpt2SmallConfig } from '../../server/model/random-checkpoint.js';

const tinyConfig = { nLayer: 2, nEmbd: 32, nHead: 4, nInner: 128, vocabSize: 50257 }; // test/fixtures/tiny-gpt2

describe('countGradientRunFlops', () => {
  it('matches a hand count for the tiny config at B=1, P=1, T=4', () => {
    // S = 4, D = 8. Per layer: dense, 2 passes x 2·1·4·(32·96 + 32·32 + 2·32·128) = 2 x 98 304; attention,
    // 6 products (2 forward, 4 backward) x 2·1·4·4·4·8 = 6 x 1 024; a layer 202 752, two layers 405 504.
    // Head: 2 x 2·4·32·50257 (logits, d h_target) = 25 731 584 and 2 x 2·4·4·32 (the target selections) = 2 048.
    // Total 405 504 + 25 731 584 + 2 048 = 26 139 136.
    const flops = countGradientRunFlops(tinyConfig, { batch: 1, promptVectors: 1, targetLength: 4 });
    expect(flops.total).toBe(26_139_136);
    expect(flops.forward + flops.backward).toBe(flops.total);
    expect(flops.matmulCount).toBe(2 * 14 + 4);
  });

  it('matches a hand count for GPT-2 124M at B=1, P=1, T=10', () => {
    // S = 10, D = 64. Per layer: dense 4·10·(4·768² + 2·768·3072) = 283 115 520; attention 12·12·10²·64 = 921 600;
    // 12 layers 3 408 445 440. Head 4·10·768·50257 = 1 543 895 040 and 4·10·10·768 = 307 200.
    const flops = countGradientRunFlops(gpt2SmallConfig, { batch: 1, promptVectors: 1, targetLength: 10 });
    expect(flops.total).toBe(4_952_647_680);
  });

  it('grows linearly in B', () => {
    const shape = { promptVectors: 1, targetLength: 10 };
    const one = countGradientRunFlops(gpt2SmallConfig, { ...shape, batch: 1 }).total;
    expect(countGradientRunFlops(gpt2SmallConfig, { ...shape, batch: 64 }).total).toBe(64 * one);
  });
});

describe('countGradientRunFlops against the MatMuls onnxruntime runs', () => {
  const profileDir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-flops-'));
  afterAll(() => fs.rmSync(profileDir, { recursive: true, force: true }));

  // Sum 2·(output elements)·k over the MatMul kernels of one profiled run: an independent count, from the shapes
  // the runtime saw rather than from the formula. Graph optimizations are off so every MatMul stays a MatMul.
  async function profiledMatmuls(B: number, P: number, T: number): Promise<{ count: number; flops: number }> {
    const checkpoint = loadCheckpoint(resolveModelDir('tiny'));
    const prefix = path.join(profileDir, `run-${B}-${P}-${T}`);
    const session = await ort.InferenceSession.create(buildGradientGraph(checkpoint).toBytes(), {
      executionProviders: ['cpu'],
      graphOptimizationLevel: 'disabled',
      enableProfiling: true,
      profileFilePrefix: prefix,
      logSeverityLevel: 3,
      extra: { session: { model_external_initializers_file_folder_path: checkpoint.dir } },
    });
    try {
      const gradient = new GradientSession(checkpoint, session, 'cpu');
      const targets = Array.from({ length: B }, (_, b) => Array.from({ length: T }, (_, t) => 100 * b + t));
      await gradient.run({ prompt: new Float32Array(B * P * 32).fill(0.1), promptVectors: P, targets });
      session.endProfiling();
    } finally {
      await session.release();
    }
    const file = fs.readdirSync(profileDir).find((f) => f.startsWith(path.basename(prefix)) && f.endsWith('.json'));
    expect(file).toBeDefined();
    interface ProfileEvent {
      name: string;
      args?: { op_name?: string; input_type_shape?: Record<string, number[]>[]; output_type_shape?: Record<string, number[]>[] };
    }
    const events = JSON.parse(fs.readFileSync(path.join(profileDir, file!), 'utf8')) as ProfileEvent[];
    const kernels = events.filter((e) => e.args?.op_name === 'MatMul' && e.name.endsWith('_kernel_time'));
    let flops = 0;
    for (const e of kernels) {
      const a = Object.values(e.args!.input_type_shape![0]!)[0]!;
      const out = Object.values(e.args!.output_type_shape![0]!)[0]!;
      flops += 2 * out.reduce((x, y) => x * y, 1) * a[a.length - 1]!;
    }
    return { count: kernels.length, flops };
  }

  it.each([[2, 1, 4], [3, 2, 5]])('agrees at B=%i, P=%i, T=%i', async (B, P, T) => {
    const counted = countGradientRunFlops(tinyConfig, { batch: B, promptVectors: P, targetLength: T });
    const profiled = await profiledMatmuls(B, P, T);
    expect(profiled.count).toBe(counted.matmulCount);
    expect(profiled.flops).toBe(counted.total);
  });
});
