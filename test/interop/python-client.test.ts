// The README's "Python and other languages" section, run as written against a real `recite serve --model tiny`
// started with a tokens file: buf curl by reflection, then the Python client of examples/python with stubs that
// Debian's protoc and grpc_python_plugin generate and Debian's python3-grpcio runs. Its shell lines run in one bash,
// in order (a line may set a variable a later one reads), each marked so that its output and exit code are checked
// on their own.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');
const token = 'python-client-token-0123456789';
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'recite-python-'));
let serve: ReturnType<typeof spawn>;
let serverUrl: string;

interface Ran {
  command: string;
  output: string;
  exit: number;
}

beforeAll(async () => {
  fs.writeFileSync(path.join(dir, 'tokens.txt'), `${token} alice\n`);
  serve = spawn('node', ['dist/cli/main.js', 'serve', '--port', '0', '--model', 'tiny', '--device', 'cpu',
    '--tokens-file', path.join(dir, 'tokens.txt'), '--db', path.join(dir, 'recite.db')], { cwd: root, stdio: ['ignore', 'pipe', 'pipe'] });
  serve.stderr!.resume(); // the JSON log
  serverUrl = await new Promise<string>((resolve, reject) => {
    let seen = '';
    serve.stdout!.on('data', (chunk: Buffer) => {
      seen += chunk.toString();
      const listening = /listening on (http:\/\/\S+)/.exec(seen);
      if (listening) resolve(listening[1]!);
    });
    serve.on('exit', (code) => reject(new Error(`recite serve exited with ${code}: ${seen}`)));
  });
});

afterAll(async () => {
  if (serve && serve.exitCode === null) {
    const exited = new Promise((resolve) => serve.once('exit', resolve));
    serve.kill('SIGTERM');
    await exited;
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

/** The shell lines of the README's "Python and other languages" section, in order. */
function readmeCommands(): string[] {
  const readme = fs.readFileSync(path.join(root, 'README.md'), 'utf8');
  const start = readme.indexOf('### Python and other languages');
  expect(start, 'the README has a "Python and other languages" section').toBeGreaterThan(0);
  const rest = readme.slice(start + 4);
  const section = rest.slice(0, rest.search(/\n#{2,3} /)); // to the next heading
  const lines = [...section.matchAll(/```sh\n([\s\S]*?)```/g)].flatMap((m) => m[1]!.split('\n'))
    .filter((line) => line.trim() !== '' && !line.trim().startsWith('#'));
  for (const line of lines) expect(line.endsWith('\\'), `one command per line: ${line}`).toBe(false);
  return lines;
}

/** Run `commands` in one bash with the server's address and token in the environment, as the README sets them. */
function runInOneShell(commands: string[]): Promise<Ran[]> {
  const quote = (text: string) => `'${text.replace(/'/g, "'\\''")}'`;
  const script = ['exec 2>&1', ...commands.flatMap((c) => [`printf '\\n@@@ %s\\n' ${quote(c)}`, c, 'echo "@@@ exit $?"'])].join('\n');
  return new Promise((resolve, reject) => {
    const shell = spawn('bash', ['-c', script], {
      cwd: root,
      env: { ...process.env, RECITE_SERVER: serverUrl, RECITE_TOKEN: token },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    shell.stdout.on('data', (chunk: Buffer) => { out += chunk.toString(); });
    shell.stderr.on('data', (chunk: Buffer) => { out += chunk.toString(); });
    shell.on('error', reject);
    shell.on('exit', () => {
      const ran = [...out.matchAll(/\n@@@ (.*)\n([\s\S]*?)@@@ exit (\d+)\n/g)]
        .map((m) => ({ command: m[1]!, output: m[2]!.replace(/^npm warn .*\n/gm, ''), exit: Number(m[3]) }));
      resolve(ran);
    });
  });
}

describe("the README's Python and other languages section, as written", () => {
  let ran: Ran[];
  const one = (pattern: RegExp): Ran => {
    const found = ran.filter((r) => pattern.test(r.command));
    expect(found, `one README command matches ${pattern}`).toHaveLength(1);
    return found[0]!;
  };

  beforeAll(async () => {
    const commands = readmeCommands();
    ran = await runInOneShell(commands);
    expect(ran.map((r) => r.command)).toEqual(commands);
  }, 300_000);

  it('lists the services by reflection and calls Tokenize with no schema but the server\'s', () => {
    const listed = one(/buf curl .*--list-services/);
    expect(listed.exit, listed.output).toBe(0);
    expect(listed.output.trim().split('\n')).toEqual(['grpc.health.v1.Health', 'grpc.reflection.v1.ServerReflection',
      'grpc.reflection.v1alpha.ServerReflection', 'recite.v1.DatasetService', 'recite.v1.ReciteService']);
    const tokenized = one(/buf curl .*Tokenize/);
    expect(tokenized.exit, tokenized.output).toBe(0);
    expect(JSON.parse(tokenized.output)).toEqual({ ids: [15496, 995], tokens: ['Hello', ' world'] });
  });

  it('generates the stubs with protoc and grpc_python_plugin', () => {
    const generated = one(/examples\/python\/generate\.sh/);
    expect(generated.exit, generated.output).toBe(0);
    for (const file of ['recite/v1/recite_pb2.py', 'recite/v1/recite_pb2_grpc.py', 'buf/validate/validate_pb2.py']) {
      expect(fs.existsSync(path.join(root, 'examples/python/gen', file)), file).toBe(true);
    }
  });

  it('submits a job and watches it to its hit', () => {
    const inverted = one(/recite_client\.py invert/);
    expect(inverted.exit, inverted.output).toBe(0);
    const lines = inverted.output.trim().split('\n');
    expect(lines[0]).toMatch(/^job [0-9a-f-]{36}$/);
    expect(lines[1]).toMatch(/^iteration 0: NLL \d+\.\d\d, correct prefix 0\/2, argmax ".*"$/);
    expect(lines.at(-1)).toMatch(/^result: STATUS_HIT at iteration \d+, decodes to "Hello world"$/);
  });

  it('cancels a running job, whose history then ends CANCELLED', () => {
    const submitted = one(/^job=\$\(.*recite_client\.py submit/);
    expect(submitted.exit, submitted.output).toBe(0);
    const cancelled = one(/recite_client\.py cancel/);
    expect(cancelled.exit, cancelled.output).toBe(0);
    expect(cancelled.output).toMatch(/^job [0-9a-f-]{36}: cancelled \(JOB_STATE_(QUEUED|RUNNING) when asked\)\n$/);
    const watched = one(/recite_client\.py watch/);
    expect(watched.exit, watched.output).toBe(0);
    expect(watched.output.trim().split('\n').at(-1)).toMatch(/^result: STATUS_CANCELLED after \d+ iterations, best NLL \d+\.\d\d, decodes to ".*"$/);
  });

  it('reports a refused token with its gRPC code and the server\'s message, and exits 1', () => {
    const refused = one(/RECITE_TOKEN=\S+ .*recite_client\.py/);
    expect(refused.exit).toBe(1);
    expect(refused.output).toBe('recite_client.py: UNAUTHENTICATED: the bearer token is not valid on this server\n');
  });
});
