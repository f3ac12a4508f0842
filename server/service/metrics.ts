// Prometheus metrics: queue depth, running jobs, iterations per second (a counter to rate()), graph-run time and
// the execution provider per model.
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import type { ModelRegistry } from './model-registry.js';

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

/** Create the metrics of one server; gauges read the live state when scraped. */
export function createServiceMetrics(models: ModelRegistry, store?: () => StoreHealth): ServiceMetrics {
  const registry = new Registry();
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
      for (const m of models.list()) if (m.state === 'READY') this.set({ model: m.name }, m.engine.queued);
    },
  });
  new Gauge({
    name: 'recite_running_restarts', help: 'restarts in the batcher', labelNames: ['model'], registers: [registry],
    collect() {
      this.reset();
      for (const m of models.list()) if (m.state === 'READY') this.set({ model: m.name }, m.engine.running);
    },
  });
  new Gauge({
    name: 'recite_model_info', help: 'models served, their state and execution provider (value 1)',
    labelNames: ['model', 'state', 'provider'], registers: [registry],
    collect() {
      this.reset();
      for (const m of models.list()) this.set({ model: m.name, state: m.state, provider: m.state === 'READY' ? m.model.provider : '' }, 1);
    },
  });
  const graphRunSeconds = new Histogram({
    name: 'recite_graph_run_seconds', help: 'mean wall time of gradient-graph runs since the last scrape',
    labelNames: ['model'], buckets: [0.001, 0.003, 0.01, 0.03, 0.1, 0.3, 1, 3, 10], registers: [registry],
    collect() {
      for (const m of models.list()) {
        if (m.state !== 'READY') continue;
        const stats = m.engine.stats;
        const before = lastGraph.get(m.name) ?? { runs: 0, ms: 0 };
        const runs = stats.graphRuns - before.runs;
        if (runs > 0) graphRunSeconds.observe({ model: m.name }, (stats.graphMs - before.ms) / runs / 1000);
        lastGraph.set(m.name, { runs: stats.graphRuns, ms: stats.graphMs });
      }
    },
  });
  const counted = new Map<string, number>();
  const iterations = new Counter({
    name: 'recite_iterations_total', help: 'job iterations evaluated (rate() gives iterations per second)',
    labelNames: ['model'], registers: [registry],
    collect() {
      for (const m of models.list()) {
        if (m.state !== 'READY') continue;
        const total = m.engine.stats.rowIterations;
        iterations.inc({ model: m.name }, total - (counted.get(m.name) ?? 0));
        counted.set(m.name, total);
      }
    },
  });
  const jobsFinished = new Counter({
    name: 'recite_jobs_finished_total', help: 'jobs finished, by status', labelNames: ['model', 'status'], registers: [registry],
  });
  return { registry, iterations, jobsFinished };
}
