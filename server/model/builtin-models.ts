// Built-in model names, for models that ship with the project, so the README's commands run without downloading
// anything: `english`, a small GPT-2 the project trained on public-domain English (the default; its card is
// docs/english-model.md), and `tiny`, random weights with known answers, the test bed. Anything else is a path to
// a Hugging Face GPT-2 folder.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

/** The model used when none is named. */
export const defaultModelName = 'english';

const builtinModels: Record<string, { relativePath: string; about: string }> = {
  english: {
    relativePath: 'server/model/builtin/english',
    about: 'recite-english: GPT-2 trained by recite on Austen, the King James Bible and the Brown corpus; n_embd 192, ' +
      '4 layers, 4 heads, 128 positions (docs/english-model.md)',
  },
  tiny: {
    relativePath: 'test/fixtures/tiny-gpt2',
    about: 'tiny-gpt2: GPT-2 architecture and vocabulary, random weights, n_embd 32, 2 layers, 4 heads, 64 positions ' +
      '(a test bed, not a language model)',
  },
};

/** Return the names and descriptions of the built-in models. */
export function listBuiltinModels(): { name: string; path: string; about: string }[] {
  return Object.entries(builtinModels).map(([name, m]) => ({ name, path: path.join(packageRoot(), m.relativePath), about: m.about }));
}

/** Say whether `name` is a built-in model's name. */
export function isBuiltinModel(name: string): boolean {
  return Object.hasOwn(builtinModels, name);
}

/** Resolve a model argument: a built-in name or a folder path. */
export function resolveModelDir(nameOrDir: string): string {
  const builtin = builtinModels[nameOrDir];
  return builtin ? path.join(packageRoot(), builtin.relativePath) : path.resolve(nameOrDir);
}

let root: string | undefined;

/** Return the folder that holds the project's package.json (the same from sources and from dist/). */
export function packageRoot(): string {
  if (root) return root;
  let dir = path.dirname(fileURLToPath(import.meta.url));
  while (!fs.existsSync(path.join(dir, 'package.json'))) {
    const parent = path.dirname(dir);
    if (parent === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
    dir = parent;
  }
  root = dir;
  return dir;
}
