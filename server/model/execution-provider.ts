// Execution providers: open an onnxruntime session on the provider asked for, or on the best one that loads.
import fs from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';

import { ExecutionProviderError, sessionThreads } from './devices.js';
import type { DeviceRequest, ProviderFallback, ProviderName } from './devices.js';

// The names and their parsing live in devices.ts, which loads no onnxruntime (the CLI parses --device with it).
export { deviceRequests, describeProvider, ExecutionProviderError, parseDeviceRequest, sessionThreads, setSessionThreads } from './devices.js';
export type { DeviceRequest, ProviderFallback, ProviderName } from './devices.js';

const autoOrder: readonly ProviderName[] = ['cuda', 'webgpu', 'cpu'];

// A provider that fails to load is reported through ExecutionProviderError and the fallbacks list; onnxruntime's
// process-wide log would print the same failure again on stderr, on every `auto` start of a CPU-only machine.
ort.env.logLevel = 'fatal';

export interface OpenedSession {
  session: ort.InferenceSession;
  provider: ProviderName;
  fallbacks: ProviderFallback[];
}

const hints: Record<ProviderName, string> = {
  cuda: "the CUDA execution provider needs onnxruntime-node's CUDA libraries (the project's .npmrc skips their download; " +
    'see "GPU servers" in docs/development.md) and CUDA 12 with cuDNN 9',
  webgpu: 'the WebGPU execution provider needs a GPU adapter (through Vulkan on Linux: a GPU driver and libvulkan1)',
  cpu: 'the CPU execution provider is bundled with onnxruntime-node and should always load',
};

/**
 * Open a session for `model` on the requested device. `externalDataDir` is the folder that the model's external
 * data locations are relative to (the checkpoint folder). An explicit provider that fails is an error that says
 * why; `auto` records each provider it passed over in `fallbacks`.
 */
export async function openSession(model: Uint8Array, externalDataDir: string, device: DeviceRequest):
  Promise<OpenedSession> {
  const candidates = device === 'auto' ? autoOrder : [device];
  const fallbacks: ProviderFallback[] = [];
  for (const provider of candidates) {
    const missing = device === 'auto' ? missingPrerequisite(provider) : undefined;
    if (missing) {
      fallbacks.push({ provider, reason: `${hints[provider]}; ${missing}` });
      continue;
    }
    try {
      const session = await ort.InferenceSession.create(model, sessionOptions(provider, externalDataDir));
      return { session, provider, fallbacks };
    } catch (error: unknown) {
      const reason = `${hints[provider]}; onnxruntime said: ${firstLine(error)}`;
      if (device !== 'auto') {
        throw new ExecutionProviderError(`device ${provider} could not be loaded: ${reason}`, { cause: error });
      }
      fallbacks.push({ provider, reason });
    }
  }
  throw new ExecutionProviderError(
    `no execution provider could be loaded: ${fallbacks.map((f) => `${f.provider}: ${f.reason}`).join(' | ')}`);
}

// WebGPU reaches a Linux GPU through Vulkan. Without the Vulkan loader, trying costs a start-up delay and a warning
// that the WebGPU library prints itself, so `auto` looks for the loader first.
const libraryDirs = ['/usr/lib/x86_64-linux-gnu', '/lib/x86_64-linux-gnu', '/usr/lib64', '/usr/lib', '/lib64', '/lib',
  '/usr/local/lib'];

function missingPrerequisite(provider: ProviderName): string | undefined {
  if (provider !== 'webgpu' || process.platform !== 'linux') return undefined;
  const dirs = [...(process.env.LD_LIBRARY_PATH ?? '').split(':').filter(Boolean), ...libraryDirs];
  return dirs.some((dir) => fs.existsSync(path.join(dir, 'libvulkan.so.1'))) ? undefined
    : 'libvulkan.so.1 (the Vulkan loader) was not found, so auto did not try it';
}

function sessionOptions(provider: ProviderName, externalDataDir: string): ort.InferenceSession.SessionOptions {
  return {
    executionProviders: [provider],
    graphOptimizationLevel: 'all',
    intraOpNumThreads: sessionThreads(),
    // Errors reach the caller as exceptions with their message; onnxruntime's own log would repeat them on stderr.
    logSeverityLevel: 4,
    extra: { session: { model_external_initializers_file_folder_path: externalDataDir } },
  };
}

function firstLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const lines = message.split('\n').map((l) => l.trim()).filter(Boolean);
  return lines.find((l) => /fail|error|not|cannot|unable/i.test(l)) ?? lines[0] ?? 'unknown error';
}
