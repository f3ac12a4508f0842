// Prometheus metrics: queue depth, running jobs, iterations per second (a counter to rate()), graph-run time and
// the execution provider per model; per client: queued cost, running rows, graph- and host-seconds used.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ModelRegistry } from './model-registry.js';
import { noProvider } from './model-registry.js';

/** What the per-client metrics read: the job hub's unfinished jobs and their cost, by client. */
export interface ClientUseSource {
  useByClient(): Map<string, { jobs: number; bytes: number }>;
}

export interface ServiceMetrics {
  registry: Registry;
  iterations: Counter<'model'>;
  jobsFinished: Counter<'model' | 'status'>;
}

/** What the metrics read of the job store's health (the job hub provides it). */
export interface StoreHealth {
  readonly storeFault: { sinceMs: number } | undefined;
  readonly storeWriteErrors: number;
}

/** What the metrics read of this server's place in a fleet (the job hub provides it). */
export interface FleetState {
  readonly serverId: string;
  readonly role: string;
  /** Jobs this server runs now (held under leases). */
  readonly liveJobs: number;
  /** Jobs claimed since the start, and how long the last claim took. */
  readonly claims: { claimed: number; lastClaimMs: number };
  /** Jobs this server lost to another server since the start (a lease that ran out while it was paused). */
  readonly leasesLost: number;
}

/** Where the metrics read live state: the job store's health and the per-client use (the job hub gives both). */
export interface MetricsSources {
  store?: () => StoreHealth;
  clients?: ClientUseSource;
  fleet?: () => FleetState;
}

/** Create the metrics of one server; gauges read the live state when scraped. */
export function createServiceMetrics(models: ModelRegistry, { store, clients, fleet }: MetricsSources = {}): ServiceMetrics {
  const registry = new Registry();
  if (fleet) {
    // Every series of a server's own state carries its name, so a fleet's scrapes sum and compare.
    new Gauge({
      name: 'recite_server_info', help: 'this server: its name among those sharing the database, and its role',
      labelNames: ['server', 'role'], registers: [registry],
      collect() {
        this.reset();
        this.set({ server: fleet().serverId, role: fleet().role }, 1);
      },
    });
    new Gauge({
      name: 'recite_jobs_held', help: 'jobs this server runs now, under its leases', labelNames: ['server'], registers: [registry],
      collect() {
        this.reset();
        this.set({ server: fleet().serverId }, fleet().liveJobs);
      },
    });
    const seen = { claimed: 0, lost: 0 };
    const claimed = new Counter({
      name: 'recite_jobs_claimed_total', help: 'jobs this server claimed from the store (after a restart, or from another server)',
      labelNames: ['server'], registers: [registry],
      collect() {
        const now = fleet();
        claimed.inc({ server: now.serverId }, now.claims.claimed - seen.claimed);
        seen.claimed = now.claims.claimed;
      },
    });
    new Gauge({
      name: 'recite_last_claim_seconds', help: 'how long this server\'s last claim of jobs took', labelNames: ['server'],
      registers: [registry],
      collect() {
        this.reset();
        this.set({ server: fleet().serverId }, fleet().claims.lastClaimMs / 1000);
      },
    });
    const lost = new Counter({
      name: 'recite_leases_lost_total', help: 'jobs this server lost to another because its lease ran out',
      labelNames: ['server'], registers: [registry],
      collect() {
        const now = fleet();
        lost.inc({ server: now.serverId }, now.leasesLost - seen.lost);
        seen.lost = now.leasesLost;
      },
    });
  }
  if (store) {
    new Gauge({
      name: 'recite_store_ready', help: '1 while the job store can be written; 0 while it fails (disk full): new jobs are refused',
      registers: [registry],
      collect() {
        this.set(store().storeFault ? 0 : 1);
      },
    });
    const counted = { errors: 0 };
    const writeErrors = new Counter({
      name: 'recite_store_write_errors_total', help: 'failed writes to the job store (each is retried)', registers: [registry],
      collect() {
        const total = store().storeWriteErrors;
        writeErrors.inc(total - counted.errors);
        counted.errors = total;
      },
    });
  }
  collectDefaultMetrics({ register: registry, prefix: 'recite_' });
  const lastGraph = new Map<string, { runs: number; ms: number }>();
  new Gauge({
    name: 'recite_queue_depth', help: 'restarts waiting for a place in the batcher', labelNames: ['model'], registers: [registry],
    collect() {
      this.reset();
      for (const { name, engine } of models.runners()) this.set({ model: name }, engine.queued);
    },
  });
  new Gauge({
    name: 'recite_running_restarts', help: 'restarts in the batcher', labelNames: ['model'], registers: [registry],
    collect() {
      this.reset();
      for (const { name, engine } of models.runners()) this.set({ model: name }, engine.running);
    },
  });
  new Gauge({
    name: 'recite_model_info', help: 'models served, their state and execution provider (value 1)',
    labelNames: ['model', 'state', 'provider'], registers: [registry],
    collect() {
      this.reset();
      for (const m of models.list()) {
        this.set({ model: m.name, state: m.state, provider: m.state === 'READY' ? m.runner?.model.provider ?? noProvider : '' }, 1);
      }
    },
  });
  const graphRunSeconds = new Histogram({
    name: 'recite_graph_run_seconds', help: 'mean wall time of gradient-graph runs since the last scrape',
    labelNames: ['model'], buckets: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10], registers: [registry],
    collect() {
      for (const { name, engine } of models.runners()) {
        const stats = engine.stats;
        const before = lastGraph.get(name) ?? { runs: 0, ms: 0 };
        const runs = stats.graphRuns - before.runs;
        if (runs > 0) graphRunSeconds.observe({ model: name }, (stats.graphMs - before.ms) / runs / 1000);
        lastGraph.set(name, { runs: stats.graphRuns, ms: stats.graphMs });
      }
    },
  });
  const counted = new Map<string, number>();
  const iterations = new Counter({
    name: 'recite_iterations_total', help: 'job iterations evaluated (rate() gives iterations per second)',
    labelNames: ['model'], registers: [registry],
    collect() {
      for (const { name, engine } of models.runners()) {
        const total = engine.stats.rowIterations;
        iterations.inc({ model: name }, total - (counted.get(name) ?? 0));
        counted.set(name, total);
      }
    },
  });
  if (clients) {
    new Gauge({
      name: 'recite_client_queued_cost_bytes', help: 'bytes the client\'s unfinished jobs hold (their admission cost)',
      labelNames: ['client'], registers: [registry],
      collect() {
        this.reset();
        for (const [client, use] of clients.useByClient()) this.set({ client }, use.bytes);
      },
    });
    new Gauge({
      name: 'recite_client_unfinished_jobs', help: 'the client\'s queued or running jobs', labelNames: ['client'],
      registers: [registry],
      collect() {
        this.reset();
        for (const [client, use] of clients.useByClient()) this.set({ client }, use.jobs);
      },
    });
  }
  new Gauge({
    name: 'recite_client_running_rows', help: 'the client\'s restarts in the batcher (rows of its graph runs)',
    labelNames: ['client', 'model'], registers: [registry],
    collect() {
      this.reset();
      for (const { name, engine } of models.runners()) {
        for (const [client, usage] of engine.clientUsage()) this.set({ client, model: name }, usage.runningRows);
      }
    },
  });
  // Counters fed from the engines' running totals at scrape time.
  const seenSeconds = new Map<string, number>();
  const clientSeconds = new Counter({
    name: 'recite_client_seconds_total', help: 'seconds of work done for the client: kind="graph" its share of ' +
      'gradient graph runs, kind="host" decode runs and host work (beam checks, summaries, Decode, sampling)',
    labelNames: ['client', 'model', 'kind'], registers: [registry],
    collect() {
      for (const { name, engine } of models.runners()) {
        for (const [client, usage] of engine.clientUsage()) {
          for (const [kind, ms] of [['graph', usage.graphMs], ['host', usage.hostMs]] as const) {
            const key = `${client}\u0000${name}\u0000${kind}`;
            const total = ms / 1000;
            const delta = total - (seenSeconds.get(key) ?? 0);
            if (delta > 0) clientSeconds.inc({ client, model: name, kind }, delta);
            seenSeconds.set(key, total);
          }
        }
      }
    },
  });
  const jobsFinished = new Counter({
    name: 'recite_jobs_finished_total', help: 'jobs finished, by status', labelNames: ['model', 'status'], registers: [registry],
  });
  return { registry, iterations, jobsFinished };
}
