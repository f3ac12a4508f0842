// The machine a benchmark ran on, written beside its figures: a figure without its host cannot be compared.
import os from 'node:os';
import ort from 'onnxruntime-node';
import { sessionThreads } from '../model/devices.js';

/** Describe the host: platform, CPU, memory and the runtime versions. */
export interface HostInfo {
  platform: string;
  arch: string;
  cpuModel: string;
  cpus: number;
  memoryMiB: number;
  node: string;
  onnxruntime: string;
  /** Threads each onnxruntime session computes with (recite --threads, RECITE_THREADS). */
  sessionThreads: number;
}

/** Return the host this process runs on. */
export function describeHost(): HostInfo {
  return {
    platform: os.platform(),
    arch: os.arch(),
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    cpus: os.availableParallelism(),
    memoryMiB: Math.round(os.totalmem() / 2 ** 20),
    node: process.version,
    onnxruntime: ort.env.versions.node ?? ort.env.versions.common,
    sessionThreads: sessionThreads(),
  };
}
