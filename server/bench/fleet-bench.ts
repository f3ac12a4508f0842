// Benchmark a fleet: several `recite serve` processes on one PostgreSQL database as one service. For each worker
// count W, a fresh database, one `--role api` server that accepts every job (it runs none, so jobs wait for the
// workers) and W `--role worker` servers named w1..wW that claim queued jobs with leases; the jobs are submitted to
// the api server as fast as it takes them, and once every one has finished the figures are read from the database:
// job-iterations per second from the first submission to the last result, how long each job waited for a worker
// (its first event, written by the worker that starts it, against its creation), the jobs each worker finished, and
// the longest gap between two consecutive results (a stall shows as a long gap). Each server's resident memory is
// read from its /metrics once the jobs are done: the api server holds no model weights or graphs, the workers do.
//
// Every server is a child process of the built CLI (dist/cli/main.js), as an operator runs them. On a machine with
// few cores the W servers share the same cores, so the figure of merit there is that the work spreads over every
// worker and nothing stalls, not that W workers go W times as fast.
import { spawn } from 'node:child_process';
import type { ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import pg from 'pg';
import { createThrowawayDatabase, DatabaseUnreachableError } from './throwaway-database.js';
import type { ThrowawayDatabase } from './throwaway-database.js';
import { createReciteClient } from '../../sdk/client.js';
import { packageRoot } from '../model/builtin-models.js';
import type { HostInfo } from './host-info.js';
import { describeHost } from './host-info.js';

/** Configure runFleetBench. */
export interface FleetBenchOptions {
  /** Admin URL of the PostgreSQL server; its role must CREATE DATABASE (one throwaway database per point). */
  adminUrl: string;
  /** Worker counts W, one point each. */
  workers: number[];
  /** Jobs submitted per point. */
  jobs: number;
  /** Iterations of every job (it keeps going after a hit, so each runs all of them). */
  iterations: number;
  /** The model every server serves and every job asks for. */
  model: string;
  /** `--max-held-jobs` of every worker: jobs one worker runs at once. */
  maxHeldJobs: number;
  /** RECITE_THREADS of every server: onnxruntime threads per session. */
  threads: number;
  /** Give up on a point whose jobs have not all finished after this many seconds from the first submission. */
  timeoutSeconds: number;
  /** Called with a line to print while the bench runs. */
  onProgress?: (line: string) => void;
}

type FleetBenchDefaults = Omit<FleetBenchOptions, 'onProgress' | 'workers'> & { workers: readonly number[] };

export const fleetBenchDefaults: Readonly<FleetBenchDefaults> = Object.freeze({
  adminUrl: process.env.RECITE_TEST_POSTGRES ?? 'postgres://recite:recite@127.0.0.1:5432/postgres',
  workers: Object.freeze([1, 2, 3]),
  jobs: 120,
  iterations: 150,
  model: 'tiny',
  maxHeldJobs: 30,
  threads: 1, // threads per server: the machines this was written on have 2 cores, shared by every server of a point
  timeoutSeconds: 900,
});

/** The figures of one worker count. */
export interface FleetBenchPoint {
  workers: number;
  jobs: number;
  /** Jobs in state FINISHED, and jobs with exactly one result event: both equal `jobs` when every job finished once. */
  finishedJobs: number;
  jobsWithOneResult: number;
  /** Result events in all: more than `jobs` would mean a job finished twice. */
  resultEvents: number;
  /** Finished jobs by status ("OK", say). */
  statuses: Record<string, number>;
  /** From the first submission to the last result event. */
  wallSeconds: number;
  /** jobs × iterations / wallSeconds. */
  jobIterationsPerSecond: number;
  /** Seconds the submissions took, all of them, through the api server. */
  submitSeconds: number;
  /** A job's first event (written once a worker starts it) minus its creation, in ms. */
  claimMs: { p50: number; p95: number; max: number };
  /** Finished jobs by owner (w1..wW). */
  jobsPerWorker: Record<string, number>;
  /** The longest time between two consecutive result events of the point, in ms. */
  longestResultGapMs: number;
  /** Resident memory of each server (api, w1..wW) once every job has finished, in MiB. */
  rssMiB: Record<string, number>;
}

export interface FleetBenchResult {
  settings: Omit<FleetBenchOptions, 'onProgress' | 'adminUrl'>;
  host: HostInfo;
  points: FleetBenchPoint[];
  /** job-iterations/s at each W over the same at W = 1 in this run (absent without a W = 1 point). */
  ratios: { workers: number; ratio: number }[];
  wallSeconds: number;
}

const token = 'fleet-bench-token-0123456789abcdef';
const readyTimeoutMs = 120_000; // a server's model loads within this, on a loaded 2-core machine too
const stopTimeoutMs = 30_000; // a SIGTERMed server finishes its writes within this, else it is killed
const pollMs = 250;

/** Run the fleet at each worker count on a fresh database of its own, and read the figures from it. */
export async function runFleetBench(request: Partial<FleetBenchOptions> = {}): Promise<FleetBenchResult> {
  const { onProgress, ...rest } = request;
  const settings = { ...fleetBenchDefaults, ...rest, workers: [...(rest.workers ?? fleetBenchDefaults.workers)] };
  const say = onProgress ?? (() => {});
  const cliPath = path.join(packageRoot(), 'dist/cli/main.js');
  if (!fs.existsSync(cliPath)) throw new Error(`${cliPath} is missing: build with \`npx tsc -p tsconfig.json\` first`);
  const started = performance.now();
  const points: FleetBenchPoint[] = [];
  for (const workers of settings.workers) {
    const point = await runPoint(cliPath, workers, settings, say);
    say(`W=${workers}: ${point.jobIterationsPerSecond.toFixed(1)} job-it/s, claim p50 ${point.claimMs.p50} ms, ` +
      `${formatPerServer(point.jobsPerWorker)}, longest gap between results ${point.longestResultGapMs} ms`);
    points.push(point);
  }
  const base = points.find((p) => p.workers === 1);
  const { adminUrl: _adminUrl, ...shown } = settings; // the admin URL holds a password: not in the figures
  return {
    settings: shown,
    host: { ...describeHost(), sessionThreads: settings.threads },
    points,
    ratios: base === undefined ? [] : points.filter((p) => p.workers !== 1)
      .map((p) => ({ workers: p.workers, ratio: p.jobIterationsPerSecond / base.jobIterationsPerSecond })),
    wallSeconds: (performance.now() - started) / 1000,
  };
}

/** "w1 40 · w2 41 · w3 39": a figure per server (jobs finished, MiB), in name order (api first, then w1..wW). */
export function formatPerServer(figures: Record<string, number>): string {
  return Object.entries(figures).sort(([a], [b]) => a.localeCompare(b, 'en', { numeric: true }))
    .map(([name, n]) => `${name} ${n}`).join(' · ');
}

type Settings = Omit<FleetBenchOptions, 'onProgress'>;

async function runPoint(cliPath: string, workers: number, settings: Settings,
  say: (line: string) => void): Promise<FleetBenchPoint> {
  const db = await createDatabase(settings.adminUrl);
  const servers: Served[] = [];
  const sql = new pg.Client({ connectionString: db.url });
  try {
    const common = ['--model', settings.model, '--device', 'cpu', '--db', db.url];
    // The api server first: it creates the schema before the workers start polling it.
    servers.push(await serve(cliPath, [...common, '--role', 'api', '--server-id', 'api'], settings.threads));
    servers.push(...await Promise.all(Array.from({ length: workers }, (_, i) => serve(cliPath, [...common,
      '--role', 'worker', '--server-id', `w${i + 1}`, '--max-held-jobs', String(settings.maxHeldJobs)], settings.threads))));
    await Promise.all(servers.map((s) => s.ready));
    say(`W=${workers}: api server and ${workers} worker${workers === 1 ? '' : 's'} ready; submitting ${settings.jobs} jobs`);
    await sql.connect();

    const client = createReciteClient(servers[0]!.url, { token });
    const firstSubmission = Date.now();
    for (let i = 0; i < settings.jobs; i++) {
      await client.submitJob(`Fleet bench job number ${i}`, {
        model: settings.model, maxIterations: settings.iterations, continueAfterHit: true, seed: i + 1,
      });
    }
    const submitSeconds = (Date.now() - firstSubmission) / 1000;

    const deadline = firstSubmission + settings.timeoutSeconds * 1000;
    let finished = 0;
    for (;;) {
      const counted = await sql.query<{ n: string }>("SELECT count(*) AS n FROM jobs WHERE state = 'FINISHED'");
      finished = Number(counted.rows[0]!.n);
      if (finished >= settings.jobs) break;
      const dead = servers.find((s) => s.child.exitCode !== null || s.child.signalCode !== null);
      if (dead) {
        throw new Error(`fleet bench W=${workers}: server ${dead.name} exited while ${settings.jobs - finished} jobs ` +
          `were unfinished:\n${dead.stderr().slice(-2000)}`);
      }
      if (Date.now() > deadline) {
        throw new Error(`fleet bench W=${workers}: ${finished} of ${settings.jobs} jobs finished within ` +
          `${settings.timeoutSeconds} s`);
      }
      await new Promise((resolve) => setTimeout(resolve, pollMs));
    }
    const figures = await readFigures(sql, workers, settings, firstSubmission, submitSeconds);
    const rss = await Promise.all(servers.map(async (s) => [s.name, await residentMiB(s.url)] as const));
    return { ...figures, rssMiB: Object.fromEntries(rss) };
  } finally {
    await sql.end().catch(() => {});
    await Promise.all(servers.map((s) => s.stop()));
    await db.drop();
  }
}

/** A server's resident memory in MiB, from the process metrics on its /metrics page. */
async function residentMiB(url: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = /^recite_process_resident_memory_bytes (\d+(?:\.\d+)?(?:e\+\d+)?)$/m.exec(text);
  if (!line) throw new Error(`fleet bench: ${url}/metrics has no recite_process_resident_memory_bytes`);
  return Math.round(Number(line[1]) / 2 ** 20);
}

async function readFigures(sql: pg.Client, workers: number, settings: Settings, firstSubmission: number,
  submitSeconds: number): Promise<Omit<FleetBenchPoint, 'rssMiB'>> {
  type JobRow = { id: string; owner: string | null; status: string | null; created_at: string; first_ms: string | null;
    results: string };
  const jobs = (await sql.query<JobRow>(`
    SELECT j.id, j.owner, j.status, j.created_at, min(e.time_ms) AS first_ms,
      count(*) FILTER (WHERE e.kind = 'result') AS results
    FROM jobs j LEFT JOIN events e ON e.job_id = j.id
    WHERE j.state = 'FINISHED'
    GROUP BY j.row -- the primary key, which the other columns of jobs follow from
  `)).rows;
  const results = await sql.query<{ time_ms: string }>("SELECT time_ms FROM events WHERE kind = 'result' ORDER BY time_ms");
  const resultTimes = results.rows.map((r) => Number(r.time_ms));
  const claims = jobs.flatMap((j) => (j.first_ms === null ? [] : [Number(j.first_ms) - Number(j.created_at)]));
  const jobsPerWorker: Record<string, number> = {};
  for (let i = 1; i <= workers; i++) jobsPerWorker[`w${i}`] = 0;
  const statuses: Record<string, number> = {};
  for (const j of jobs) {
    const owner = j.owner ?? '(none)';
    jobsPerWorker[owner] = (jobsPerWorker[owner] ?? 0) + 1;
    const status = j.status ?? '(none)';
    statuses[status] = (statuses[status] ?? 0) + 1;
  }
  let longestResultGapMs = 0;
  for (let i = 1; i < resultTimes.length; i++) {
    longestResultGapMs = Math.max(longestResultGapMs, resultTimes[i]! - resultTimes[i - 1]!);
  }
  const lastResult = resultTimes.at(-1) ?? firstSubmission;
  const wallSeconds = (lastResult - firstSubmission) / 1000;
  return {
    workers,
    jobs: settings.jobs,
    finishedJobs: jobs.length,
    jobsWithOneResult: jobs.filter((j) => Number(j.results) === 1).length,
    resultEvents: resultTimes.length,
    statuses,
    wallSeconds,
    jobIterationsPerSecond: settings.jobs * settings.iterations / wallSeconds,
    submitSeconds,
    claimMs: { p50: percentile(claims, 0.5), p95: percentile(claims, 0.95), max: Math.max(...claims) },
    jobsPerWorker,
    longestResultGapMs,
  };
}

/** The nearest-rank percentile of a non-empty list: the smallest value with at least p of the values at or below it. */
export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.max(0, Math.ceil(p * sorted.length) - 1)]!;
}

interface Served {
  name: string;
  child: ChildProcess;
  url: string;
  /** Resolves once every model of the server is ready. */
  ready: Promise<void>;
  stderr(): string;
  /** SIGTERM, and wait for the exit (SIGKILL after stopTimeoutMs). */
  stop(): Promise<void>;
}

const listeningLine = /^recite serve: listening on (http:\/\/\S+)/m;
const readyLine = /^recite serve: model \S+ ready /m;

/** Start `recite serve --port 0 …args` and resolve once it prints the URL it listens on. */
async function serve(cliPath: string, args: string[], threads: number): Promise<Served> {
  const name = args[args.indexOf('--server-id') + 1]!;
  const child = spawn(process.execPath, [cliPath, 'serve', '--port', '0', ...args], {
    env: { ...process.env, RECITE_TOKENS: `${token}=fleet-bench`, RECITE_THREADS: String(threads) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  const watchers = new Set<() => void>();
  child.stdout!.on('data', (chunk: Buffer) => {
    stdout += chunk.toString();
    for (const watch of watchers) watch();
  });
  child.stderr!.on('data', (chunk: Buffer) => { stderr += chunk.toString(); });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const waitFor = (line: RegExp, what: string) => new Promise<RegExpExecArray>((resolve, reject) => {
    const timer = setTimeout(() => {
      watchers.delete(check);
      reject(new Error(`fleet bench: server ${name} was not ${what} within ${readyTimeoutMs} ms:\n${stderr.slice(-2000)}`));
    }, readyTimeoutMs);
    function check() {
      const match = line.exec(stdout);
      if (!match) return;
      clearTimeout(timer);
      watchers.delete(check);
      resolve(match);
    }
    watchers.add(check);
    void exited.then(() => {
      clearTimeout(timer);
      watchers.delete(check);
      reject(new Error(`fleet bench: server ${name} exited (code ${child.exitCode}, signal ${child.signalCode}) ` +
        `before it was ${what}:\n${stderr.slice(-2000)}`));
    });
    check();
  });
  const stop = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return;
    child.kill('SIGTERM');
    const timer = setTimeout(() => child.kill('SIGKILL'), stopTimeoutMs);
    await exited;
    clearTimeout(timer);
  };
  try {
    const url = (await waitFor(listeningLine, 'listening'))[1]!;
    const ready = waitFor(readyLine, 'ready').then(() => {});
    ready.catch(() => {}); // awaited by the caller; a rejection before then is not unhandled
    return { name, child, url, ready, stderr: () => stderr, stop };
  } catch (error: unknown) {
    await stop();
    throw error;
  }
}

/** Create an empty database for one point of the bench, or fail with what --db must name. */
async function createDatabase(adminUrl: string): Promise<ThrowawayDatabase> {
  try {
    return await createThrowawayDatabase(adminUrl, 'recite_bench_fleet');
  } catch (error: unknown) {
    if (!(error instanceof DatabaseUnreachableError)) throw error;
    throw new Error(`fleet bench: ${error.message}; give --db the admin URL of a server whose role may CREATE DATABASE`);
  }
}
