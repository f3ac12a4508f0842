// A data set run's results on disk: one JSON line per row, appended as rows finish, and every row's embedding in
// one safetensors file keyed by row id, rewritten whole (beside it, then renamed) every few seconds and at the end.
// Reopened, it says which rows are done and from where in the server's finish order to collect again, so a run
// killed at any moment and started again writes each row exactly once and loses no embedding.
import fs from 'node:fs';
import type { Job } from '../../sdk/index.js';
import { Status } from '../../sdk/index.js';
import type { DatasetRow } from '../../sdk/gen/recite/v1/dataset_pb.js';
import { readSafetensorsHeader, readTensorFloat32, writeSafetensors } from '../../server/model/safetensors.js';
import type { DatasetFileRow } from './dataset-file.js';

/** One line of the results file. */
export interface ResultLine {
  id: string;
  text: string;
  target_ids: number[];
  /** T. */
  tokens: number;
  status: string;
  /** Optimizer steps of the best restart before its hit; null without one. */
  iterations_to_hit: number | null;
  /** Over all restarts. */
  iterations: number;
  /** Summed NLL (nats) of the best restart's best iteration; null for a row that never ran. */
  best_nll: number | null;
  bits_per_token: number | null;
  bits_per_char: number | null;
  decoded_text: string;
  /** The decoded tokens are the target's. */
  exact: boolean;
  best_restart: number;
  seed: number | null;
  /** (P, C) of the embedding stored under this id; null when there is none. */
  embedding_shape: number[] | null;
  /** Search time of all restarts, and job creation to finish (queue wait included). */
  search_ms: number;
  wall_ms: number | null;
  job_id: string;
  dataset: string;
  /** The row's place in the order the server finished rows. */
  finish_order: number;
  error: string | null;
}

/** Where a reopened results file stands. */
export interface ResumePoint {
  /** Rows with a line. */
  done: number;
  /** Ask the server for rows after this finish order: every row up to it has its line and its embedding. */
  afterFinishOrder: number;
}

/** Report a results file that belongs to another data set, or cannot be read. */
export class ResultsFileError extends Error {
  override name = 'ResultsFileError';
}

const embeddingWriteIntervalMs = 3000; // ms between rewrites of the safetensors file while rows finish

/** Append result lines and keep the embeddings file; see the module comment. */
export class ResultsWriter {
  readonly jsonlPath: string;
  readonly safetensorsPath: string;
  private readonly lines = new Map<string, ResultLine>();
  private readonly embeddings = new Map<string, { shape: number[]; data: Float32Array }>();
  private dirty = false;
  private lastWrite = 0;
  private fd: number;

  /**
   * Open `<prefix>.jsonl` and `<prefix>.safetensors` for data set `dataset`, reading what an earlier run wrote. A
   * line cut short by a kill is removed; lines of another data set are an error.
   */
  constructor(prefix: string, private readonly dataset: string) {
    this.jsonlPath = `${prefix}.jsonl`;
    this.safetensorsPath = `${prefix}.safetensors`;
    if (fs.existsSync(this.jsonlPath)) this.readLines();
    if (fs.existsSync(this.safetensorsPath)) this.readEmbeddings();
    this.fd = fs.openSync(this.jsonlPath, 'a');
  }

  /** Return the rows done and where to resume the server's finish order. */
  resumePoint(): ResumePoint {
    const byOrder = new Map<number, ResultLine>();
    for (const line of this.lines.values()) byOrder.set(line.finish_order, line);
    let after = 0;
    for (;;) {
      const line = byOrder.get(after + 1);
      if (!line || (line.embedding_shape !== null && !this.embeddings.has(line.id))) break;
      after++;
    }
    return { done: this.lines.size, afterFinishOrder: after };
  }

  /** Report whether row `id` has its line. */
  has(id: string): boolean {
    return this.lines.has(id);
  }

  /** Return the lines written so far (this run's and earlier runs'). */
  results(): ResultLine[] {
    return [...this.lines.values()];
  }

  /**
   * Record a finished row: its line (unless an earlier run wrote it) and its embedding. Returns the line, or
   * undefined when the row was already complete.
   */
  add(input: DatasetFileRow, row: DatasetRow, job: Job | undefined): ResultLine | undefined {
    const existing = this.lines.get(row.id);
    const line = existing ?? toLine(input, row, job, this.dataset);
    const best = job?.result?.restarts[job.result.best];
    if (best?.embedding && line.embedding_shape && !this.embeddings.has(row.id)) {
      this.embeddings.set(row.id, { shape: [...best.embedding.shape], data: Float32Array.from(best.embedding.values) });
      this.dirty = true;
    }
    if (existing) return undefined;
    fs.writeSync(this.fd, `${JSON.stringify(line)}\n`);
    this.lines.set(line.id, line);
    return line;
  }

  /** Rewrite the embeddings file if it changed and the last write is old enough (or `force`). */
  flushEmbeddings(force = false): void {
    if (!this.dirty || (!force && Date.now() - this.lastWrite < embeddingWriteIntervalMs)) return;
    const tensors = [...this.embeddings].map(([name, e]) => ({ name, shape: e.shape, data: e.data }));
    writeSafetensors(this.safetensorsPath, tensors, { dataset: this.dataset, format: 'recite dataset results: one (P, C) embedding per row id' });
    this.dirty = false;
    this.lastWrite = Date.now();
  }

  /** Write the embeddings and close the lines file. */
  close(): void {
    this.flushEmbeddings(true);
    fs.closeSync(this.fd);
  }

  private readLines(): void {
    const content = fs.readFileSync(this.jsonlPath, 'utf8');
    // A kill can cut the last line short: keep what ends in a newline.
    const complete = content.slice(0, content.lastIndexOf('\n') + 1);
    if (complete.length !== content.length) fs.truncateSync(this.jsonlPath, Buffer.byteLength(complete));
    complete.split('\n').forEach((text, i) => {
      if (text === '') return;
      let line: ResultLine;
      try {
        line = JSON.parse(text) as ResultLine;
      } catch {
        throw new ResultsFileError(`${this.jsonlPath}:${i + 1}: not a JSON line; remove the file or choose another --out`);
      }
      if (line.dataset !== this.dataset) {
        throw new ResultsFileError(`${this.jsonlPath} holds results of data set ${line.dataset}; this run is ${this.dataset}: ` +
          'choose another --out, or remove the file to start over');
      }
      this.lines.set(line.id, line);
    });
  }

  private readEmbeddings(): void {
    const header = readSafetensorsHeader(this.safetensorsPath);
    if (header.metadata.dataset !== undefined && header.metadata.dataset !== this.dataset) {
      throw new ResultsFileError(`${this.safetensorsPath} holds embeddings of data set ${header.metadata.dataset}; this run is ` +
        `${this.dataset}: choose another --out, or remove the file to start over`);
    }
    for (const tensor of header.tensors) this.embeddings.set(tensor.name, { shape: tensor.shape, data: readTensorFloat32(tensor) });
  }
}

/** Build a row's result line from its outcome and (when it ran) its job. */
function toLine(input: DatasetFileRow, row: DatasetRow, job: Job | undefined, dataset: string): ResultLine {
  const result = job?.result;
  const best = result?.restarts[result.best];
  const targetIds = job ? [...job.targetIds] : input.targetIds ?? [];
  const text = input.targetIds && job ? job.targetText : input.text;
  const tokens = targetIds.length;
  const bestNll = best && Number.isFinite(best.bestNll) ? best.bestNll : null;
  const characters = [...text].length;
  const ms = (t: { seconds: bigint; nanos: number } | undefined) => (t ? Number(t.seconds) * 1000 + t.nanos / 1e6 : undefined);
  const created = ms(job?.createdAt);
  const finished = ms(job?.finishedAt);
  return {
    id: row.id,
    text,
    target_ids: targetIds,
    tokens,
    status: Status[row.status] ?? 'UNSPECIFIED',
    iterations_to_hit: row.iterationsToHit ?? null,
    iterations: row.iterations,
    best_nll: bestNll,
    bits_per_token: bestNll !== null && tokens > 0 ? bestNll / Math.LN2 / tokens : null,
    bits_per_char: bestNll !== null && characters > 0 ? bestNll / Math.LN2 / characters : null,
    decoded_text: best?.decodedText ?? '',
    exact: best !== undefined && sameIds(best.decodedIds, targetIds),
    best_restart: result?.best ?? 0,
    seed: best?.seed ?? null,
    embedding_shape: best?.embedding ? [...best.embedding.shape] : null,
    search_ms: row.elapsedMs,
    wall_ms: created !== undefined && finished !== undefined ? finished - created : null,
    job_id: row.jobId,
    dataset,
    finish_order: row.finishOrder,
    error: row.error || null,
  };
}

function sameIds(a: readonly number[], b: readonly number[]): boolean {
  return a.length === b.length && a.every((id, i) => id === b[i]);
}
