// A command that talks to a server (`--server`) starts as a client alone: the CLI loads the module of the command
// named and nothing of the server's (onnxruntime, SQLite, pino) or the charts (Vega). Checked on the built CLI with a
// module hook that logs every URL the process resolves; `bench --help` loading onnxruntime shows the log sees it.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { commandModules } from '../../cli/command-modules.js';

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.join(here, '..', '..');
const heavy = ['onnxruntime-node', 'better-sqlite3', 'pino', 'vega', 'vega-lite'];

/** Run the built CLI with `args`; return the packages of node_modules it resolved. */
function packagesLoaded(args: string[]): Set<string> {
  const log = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'recite-imports-')), 'imports.log');
  const run = spawnSync(process.execPath, ['--import', path.join(here, 'import-log.mjs'), path.join(root, 'dist', 'cli', 'main.js'), ...args], {
    env: { ...process.env, RECITE_IMPORT_LOG: log, RECITE_SERVER: '', RECITE_TOKEN: '' }, encoding: 'utf8', timeout: 60_000,
  });
  expect(run.status, run.stderr).not.toBeNull();
  const urls = fs.readFileSync(log, 'utf8').split('\n');
  return new Set(urls.flatMap((url) => {
    const match = /node_modules\/((?:@[^/]+\/)?[^/]+)\//.exec(url);
    return match ? [match[1]!] : [];
  }));
}

describe('the CLI loads what the command needs', () => {
  it.each([
    ['jobs'], ['watch', 'job-1'], ['cancel', 'job-1'], ['delete', 'job-1'], ['invert', 'Hello'], ['score', 'Hello'], ['models'],
    ['dataset', 'list'], ['study', 'targets.txt', '--grid', 'seeds=1'], ['capacity'],
  ])('%s … --server: none of the server\'s modules', (...args) => {
    const loaded = packagesLoaded([...args, '--server', 'http://127.0.0.1:9', '--token', 't']);
    expect(loaded.has('@connectrpc/connect'), 'it loaded the client').toBe(true);
    expect(heavy.filter((name) => loaded.has(name))).toEqual([]);
  }, 60_000);

  it('loads onnxruntime for a command that runs a model, and everything for the help', () => {
    expect(packagesLoaded(['bench', '--help']).has('onnxruntime-node')).toBe(true);
    const all = packagesLoaded(['--help']);
    expect(heavy.filter((name) => !all.has(name) && name !== 'vega' && name !== 'vega-lite')).toEqual([]);
  }, 60_000);

  it('names, for each command module, exactly the commands it defines', async () => {
    for (const module of commandModules) {
      const program = new Command('recite');
      (await module.load())(program);
      expect(program.commands.map((c) => c.name())).toEqual(module.commands);
    }
  }, 60_000);
});
