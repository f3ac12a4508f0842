// The devices a model can run on, by name: what a caller may ask for, its parsing and how a choice is described.
// Nothing here loads onnxruntime, so the CLI can check --device without it (execution-provider.ts opens sessions).

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
