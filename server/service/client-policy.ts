// What each client may do on a shared server: its quotas (unfinished jobs, queued cost in bytes) and whether it is an
// admin (lists and cancels any client's job). Set per client in the tokens file, after the token and the client:
//
//   TOKEN CLIENT [admin] [max-jobs=N] [max-queued=SIZE]
//
// SIZE is bytes with an optional unit (KiB, MiB, GiB; KB, MB, GB are powers of 1000). A client named on several
// lines (several tokens) takes the options of all of them; giving one limit two different values is an error.
// Limits not given come from the server's defaults (`recite serve --max-queue`, `--max-queued`).
import { parseBytes } from '../engine/run-cost.js';
import { integerRange, isIntegerIn } from '../util/numbers.js';

/** One client's own settings from the tokens file. */
export interface ClientPolicy {
  admin: boolean;
  /** Unfinished (queued or running) jobs at most. */
  maxJobs?: number;
  /** Bytes the client's unfinished jobs may hold at most (see jobBytes). */
  maxQueuedBytes?: number;
}

/** A client's limits in force: its own, else the server's defaults. */
export interface ClientLimits {
  maxJobs: number;
  maxQueuedBytes: number;
}

/** Parse the option fields of one tokens-file line ("admin", "max-jobs=20", …); `where` is "FILE:LINE". */
export function parseClientOptions(fields: readonly string[], where: string): ClientPolicy {
  const policy: ClientPolicy = { admin: false };
  for (const field of fields) {
    if (field === 'admin') {
      policy.admin = true;
      continue;
    }
    const at = field.indexOf('=');
    const key = at < 0 ? field : field.slice(0, at);
    const value = field.slice(at + 1);
    if (at > 0 && key === 'max-jobs') {
      const n = Number(value);
      if (!/^\d+$/.test(value) || !isIntegerIn(n, 1, Number.MAX_SAFE_INTEGER)) {
        throw new Error(`${where}: max-jobs=${value} is not ${integerRange(1)}`);
      }
      policy.maxJobs = n;
    } else if (at > 0 && key === 'max-queued') {
      const bytes = parseBytes(value, `${where}: max-queued`);
      if (bytes < 1) throw new Error(`${where}: max-queued=${value} must be at least 1 byte`);
      policy.maxQueuedBytes = bytes;
    } else {
      throw new Error(`${where}: unknown option ${JSON.stringify(field)}; expected admin, max-jobs=N or max-queued=SIZE`);
    }
  }
  return policy;
}

/** Merge a client's options from a second line; `where` names that line. */
export function mergeClientPolicy(client: string, a: ClientPolicy, b: ClientPolicy, where: string): ClientPolicy {
  const pick = (key: 'maxJobs' | 'maxQueuedBytes', flag: string) => {
    if (a[key] !== undefined && b[key] !== undefined && a[key] !== b[key]) {
      throw new Error(`${where}: client ${client} is given ${flag}=${b[key]} here and ${a[key]} on an earlier line`);
    }
    return a[key] ?? b[key];
  };
  const maxJobs = pick('maxJobs', 'max-jobs');
  const maxQueuedBytes = pick('maxQueuedBytes', 'max-queued');
  return {
    admin: a.admin || b.admin,
    ...(maxJobs === undefined ? {} : { maxJobs }),
    ...(maxQueuedBytes === undefined ? {} : { maxQueuedBytes }),
  };
}
