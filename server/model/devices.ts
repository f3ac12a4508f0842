// The devices a model can run on, by name: what a caller may ask for, its parsing and how a choice is described,
// and the threads a session computes with. Nothing here loads onnxruntime, so the CLI can check --device and set
// --threads without it (execution-provider.ts opens sessions).
import os from 'node:os';
import { integerProblem } from '../util/numbers.js';

/** What a caller may ask for. `auto` tries cuda, then webgpu, then cpu. */
export type DeviceRequest = 'cpu' | 'webgpu' | 'cuda' | 'auto';
/** A provider a session actually runs on. */
export type ProviderName = Exclude<DeviceRequest, 'auto'>;

export const deviceRequests: readonly DeviceRequest[] = ['auto', 'cpu', 'webgpu', 'cuda'];

/** A provider that `auto` passed over, and why. */
export interface ProviderFallback {
  provider: ProviderName;
  reason: string;
}

/** Raised when the provider asked for explicitly cannot load, or when none can, or for a device name unknown. */
export class ExecutionProviderError extends Error {
  override name = 'ExecutionProviderError';
}

/** Parse a device name from a command line or a request. */
export function parseDeviceRequest(value: string): DeviceRequest {
  if ((deviceRequests as readonly string[]).includes(value)) return value as DeviceRequest;
  throw new ExecutionProviderError(`device "${value}" is not one of ${deviceRequests.join(', ')}`);
}

/** "cpu; skipped cuda: …; skipped webgpu: …": the provider a model runs on and each one `auto` passed over, why. */
export function describeProvider(provider: string, fallbacks: readonly ProviderFallback[]): string {
  return provider + fallbacks.map((f) => `; skipped ${f.provider}: ${f.reason}`).join('');
}

// onnxruntime-node's own default ran one thread per operator on a 2-core machine; every core halves the gradient
// graph's time there (docs/benchmarks.md, "Threads"). RECITE_THREADS sets it for a whole process tree (the test suite
// runs its servers on one thread each, as several run at once); `recite --threads` overrides it.
let threads: number | undefined; // read from the environment on first use, so a bad value fails where it is used

function threadsFromEnvironment(): number {
  const value = process.env.RECITE_THREADS;
  if (value === undefined || value === '') return os.availableParallelism();
  const problem = integerProblem(Number(value), 1, 1024);
  if (problem) throw new ExecutionProviderError(`RECITE_THREADS=${value}: ${problem}`);
  return Number(value);
}

/** The threads one session runs an operator on (onnxruntime's intra-op threads). */
export function sessionThreads(): number {
  threads ??= threadsFromEnvironment();
  return threads;
}

/** Set the threads of the sessions opened from now on. */
export function setSessionThreads(count: number): void {
  const problem = integerProblem(count, 1, 1024);
  if (problem) throw new ExecutionProviderError(`threads: ${problem}`);
  threads = count;
}
