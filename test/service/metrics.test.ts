// Prometheus metrics at /metrics: queue depth, running restarts, iterations (rate() gives iterations/s),
// graph-run time, jobs finished by status, and each model's state and execution provider.
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { createReciteClient } from '../../sdk/index.js';
import { aliceToken, startTestServer } from '../helpers/test-server.js';
import type { TestServer } from '../helpers/test-server.js';

let server: TestServer;
beforeAll(async () => {
  server = await startTestServer();
});
afterAll(async () => {
  await server.close();
});

const metric = (text: string, name: string): number | undefined => {
  const match = new RegExp(`^${name.replace(/[{}"]/g, '\\$&')} (\\S+)$`, 'm').exec(text);
  return match ? Number(match[1]) : undefined;
};

describe('/metrics', () => {
  test('counts a finished job, its iterations and graph runs, and names the model and its provider', async () => {
    const before = await (await fetch(`${server.url}/metrics`)).text();
    expect(before).toContain('# TYPE recite_queue_depth gauge');
    expect(metric(before, 'recite_model_info{model="tiny",state="READY",provider="cpu"}')).toBe(1);
    const client = createReciteClient(server.url, { token: aliceToken });
    let iterations = 0;
    // 30 iterations: "Hello world" needs about 110 to hit, so the job ends MAX_ITERATIONS after exactly 30
    for await (const event of client.invert('Hello world', { maxIterations: 30 })) {
      if (event.type === 'progress') iterations++;
    }
    expect(iterations).toBe(30);
    const after = await (await fetch(`${server.url}/metrics`)).text();
    expect(metric(after, 'recite_iterations_total{model="tiny"}')).toBeGreaterThanOrEqual(30);
    expect(metric(after, 'recite_jobs_finished_total{model="tiny",status="MAX_ITERATIONS"}')).toBe(1);
    expect(metric(after, 'recite_graph_run_seconds_count{model="tiny"}')).toBeGreaterThanOrEqual(1);
    expect(metric(after, 'recite_queue_depth{model="tiny"}')).toBe(0);
    expect(metric(after, 'recite_running_restarts{model="tiny"}')).toBe(0);
  });
});
