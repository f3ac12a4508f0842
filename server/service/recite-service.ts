// ReciteService's handlers: validate at the edge, then hand over to the job hub, the model registry, the decoders.
import type { HandlerContext, ServiceImpl } from '@connectrpc/connect';
import { Code, ConnectError } from '@connectrpc/connect';
import { beamDecode, greedyDecode } from '../engine/decoders.js';
import { scoreTokenIds } from '../engine/score.js';
import { ModelInputError } from '../model/gpt2-session.js';
import {
  CancelJobRequestSchema, DecodeRequestSchema, DeleteJobRequestSchema, GetJobRequestSchema, InvertRequestSchema,
  ListJobsRequestSchema, ModelState, ReciteService, ScoreRequestSchema, SubmitJobRequestSchema, TokenizeRequestSchema,
  WatchJobRequestSchema,
} from '../../sdk/gen/recite/v1/recite_pb.js';
import type {
  CancelJobRequest, DecodeRequest, DeleteJobRequest, GetJobRequest, InvertRequest, ListJobsRequest, ScoreRequest,
  SubmitJobRequest, TokenizeRequest, WatchJobRequest,
} from '../../sdk/gen/recite/v1/recite_pb.js';
import { clientOf, isAdmin } from './auth.js';
import type { JobHub } from './job-hub.js';
import type { ModelRegistry } from './model-registry.js';
import { noProvider, publicError } from './model-registry.js';
import { validateRequest } from './validation.js';

// Larger values overflow float32 in the model's LayerNorm (squares summed over C) and decode to nothing; trained
// prompts stay orders of magnitude below.
const maxPromptMagnitude = 1e6;

const modelStates = { LOADING: ModelState.LOADING, READY: ModelState.READY, FAILED: ModelState.FAILED } as const;

export class ReciteServiceImpl implements ServiceImpl<typeof ReciteService> {
  constructor(private readonly hub: JobHub, private readonly models: ModelRegistry) {}

  async *invert(req: InvertRequest, ctx: HandlerContext) {
    validateRequest(InvertRequestSchema, req);
    const clientId = clientOf(ctx);
    const { jobId } = await this.hub.submit(clientId, req.spec!);
    let finished = false;
    try {
      for await (const event of this.hub.watch(clientId, jobId, 0, ctx.signal)) {
        yield { jobId, event };
        if (event.kind.case === 'result') finished = true;
      }
    } finally {
      // The job outlives its stream unless the client asked otherwise.
      if (!finished && req.cancelOnDisconnect) await this.hub.cancel(clientId, jobId);
    }
  }

  async submitJob(req: SubmitJobRequest, ctx: HandlerContext) {
    validateRequest(SubmitJobRequestSchema, req);
    return this.hub.submit(clientOf(ctx), req.spec!);
  }

  async *watchJob(req: WatchJobRequest, ctx: HandlerContext) {
    validateRequest(WatchJobRequestSchema, req);
    for await (const event of this.hub.watch(clientOf(ctx), req.jobId, req.afterSequence, ctx.signal)) {
      yield { jobId: req.jobId, event };
    }
  }

  async getJob(req: GetJobRequest, ctx: HandlerContext) {
    validateRequest(GetJobRequestSchema, req);
    return { job: await this.hub.getJob(clientOf(ctx), req.jobId, isAdmin(ctx)) };
  }

  async listJobs(req: ListJobsRequest, ctx: HandlerContext) {
    validateRequest(ListJobsRequestSchema, req);
    return {
      jobs: await this.hub.listJobs(clientOf(ctx), req.pageSize, req.beforeJobId, { allClients: req.allClients, admin: isAdmin(ctx) }),
    };
  }

  async cancelJob(req: CancelJobRequest, ctx: HandlerContext) {
    validateRequest(CancelJobRequestSchema, req);
    return { state: await this.hub.cancel(clientOf(ctx), req.jobId, isAdmin(ctx)) };
  }

  async deleteJob(req: DeleteJobRequest, ctx: HandlerContext) {
    validateRequest(DeleteJobRequestSchema, req);
    await this.hub.deleteJob(clientOf(ctx), req.jobId, isAdmin(ctx));
    return {};
  }

  async decode(req: DecodeRequest, ctx: HandlerContext) {
    validateRequest(DecodeRequestSchema, req);
    const clientId = clientOf(ctx);
    const { model, engine } = this.models.requireRunner(req.model, 'model', 'Decode');
    const { nEmbd: C, nPositions } = model.checkpoint.config;
    const shape = req.embedding!.shape;
    const values = req.embedding!.values;
    const P = shape.length === 1 ? 1 : shape[0]!;
    if (shape[shape.length - 1] !== C || (shape.length !== 1 && shape.length !== 2)) {
      throw new ConnectError(`embedding.shape: [${shape.join(', ')}]; expected [P, ${C}] (C is the model's n_embd)`,
        Code.InvalidArgument);
    }
    if (P < 1 || P > nPositions) {
      throw new ConnectError(`embedding.shape: [${shape.join(', ')}]: P = ${P} prompt vectors; the model's context ` +
        `of ${nPositions} positions takes 1 to ${nPositions}`, Code.InvalidArgument);
    }
    if (values.length !== P * C) {
      throw new ConnectError(`embedding.values: ${values.length} numbers; shape [${P}, ${C}] needs ${P * C}`, Code.InvalidArgument);
    }
    const bad = values.findIndex((v) => !(Math.abs(v) <= maxPromptMagnitude));
    if (bad >= 0) {
      const v = values[bad]!;
      throw new ConnectError(Number.isFinite(v)
        ? `embedding.values[${bad}]: ${v} is beyond ±${maxPromptMagnitude}, the largest magnitude a prompt value may have`
        : `embedding.values[${bad}]: ${v} is not a finite number`, Code.InvalidArgument);
    }
    // the last step reads the prompt and max_tokens - 1 generated tokens
    if (P + req.maxTokens - 1 > nPositions) {
      throw new ConnectError(`max_tokens: ${req.maxTokens} with P = ${P} prompt vectors exceeds the model's context of ` +
        `${nPositions} positions (at most ${nPositions - P + 1})`, Code.InvalidArgument);
    }
    const prompt = Float32Array.from(values);
    // Each decode step takes its turn in the engine's fair-share rounds, charged to this client.
    const decoder = engine.decoderFor(clientId);
    const ids = req.beams > 1
      ? (await beamDecode(decoder, prompt, P, req.maxTokens, req.beams)).ids
      : await greedyDecode(decoder, prompt, P, req.maxTokens);
    return { ids, text: model.tokenizer.decode(ids) };
  }

  async tokenize(req: TokenizeRequest, ctx: HandlerContext) {
    validateRequest(TokenizeRequestSchema, req);
    clientOf(ctx);
    const { tokenizer } = this.models.require(req.model);
    const ids = tokenizer.encode(req.text, { allowEndOfText: req.allowEndOfText });
    return { ids, tokens: ids.map((id) => tokenizer.tokenText(id)) };
  }

  async score(req: ScoreRequest, ctx: HandlerContext) {
    validateRequest(ScoreRequestSchema, req);
    const clientId = clientOf(ctx);
    const { model, engine } = this.models.requireRunner(req.model, 'model', 'Score');
    const ids = req.texts.map((text) => model.tokenizer.encode(text));
    try {
      // Its graph runs take their turn in the engine's fair-share rounds, charged to this client.
      const scores = await scoreTokenIds({ ...model, gradient: engine.gradientFor(clientId) }, ids,
        req.texts.map((text) => [...text].length));
      return {
        scores: scores.map((s, i) => ({
          ids: ids[i]!,
          tokens: ids[i]!.map((id) => model.tokenizer.tokenText(id)),
          nll: s.nll,
          nllSum: s.nllSum,
          bitsPerToken: s.bitsPerToken,
          bitsPerChar: s.bitsPerChar,
          perplexity: s.perplexity,
        })),
      };
    } catch (error) {
      if (error instanceof ModelInputError) throw new ConnectError(error.message, Code.InvalidArgument);
      throw error;
    }
  }

  async listModels(_req: unknown, ctx: HandlerContext) {
    clientOf(ctx);
    return {
      models: this.models.list().map((m) => {
        const config = m.state === 'READY' ? m.config : undefined;
        return {
          name: m.name,
          state: modelStates[m.state],
          vocabSize: config?.vocabSize ?? 0,
          nPositions: config?.nPositions ?? 0,
          nEmbd: config?.nEmbd ?? 0,
          nLayer: config?.nLayer ?? 0,
          nHead: config?.nHead ?? 0,
          provider: m.state === 'READY' ? m.runner?.model.provider ?? noProvider : '',
          isDefault: m.name === this.models.defaultModel,
          description: m.description,
          error: m.state === 'FAILED' ? publicError(m) : '',
        };
      }),
    };
  }
}
