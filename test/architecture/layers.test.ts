// The folders of server/ are layers (docs/design.md, "Layers and data flow"): every module imports only from its own
// folder or from a layer below, never up and never sideways into a sibling of its layer. Imports are read with the
// TypeScript parser (static imports, re-exports and dynamic import() calls, type-only ones included).
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const here = path.dirname(fileURLToPath(import.meta.url));
const serverDir = path.join(here, '..', '..', 'server');

/** Bottom to top; the parts of one layer may not import each other. `app` is server/app.ts. */
const layers: readonly (readonly string[])[] = [
  ['util'],
  ['model'],
  ['engine', 'store'],
  ['service'],
  ['dashboard', 'datasets'],
  ['app'],
  ['bench', 'training'],
];

function partOf(file: string): string {
  const relative = path.relative(serverDir, file);
  return relative.replace(/\.js$/, '.ts') === 'app.ts' ? 'app' : relative.split(path.sep)[0]!;
}

function layerOf(part: string): number {
  const index = layers.findIndex((layer) => layer.includes(part));
  if (index < 0) throw new Error(`server/${part} is in no layer of this test: add it to \`layers\``);
  return index;
}

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'builtin' || entry.name === 'static' ? [] : sourceFiles(file);
    return file.endsWith('.ts') ? [file] : [];
  });
}

/** The relative module specifiers a file imports, statically or with import(). */
function importsOf(file: string): string[] {
  const source = ts.createSourceFile(file, fs.readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const found: string[] = [];
  const visit = (node: ts.Node): void => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier && ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text);
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword && ts.isStringLiteral(node.arguments[0]!)) {
      found.push((node.arguments[0] as ts.StringLiteral).text);
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found.filter((s) => s.startsWith('.'));
}

/** Every import from one part of server/ into another: "engine/batcher.ts -> model/x.js". */
function crossImports(): { from: string; to: string; line: string }[] {
  return sourceFiles(serverDir).flatMap((file) => importsOf(file).flatMap((specifier) => {
    const target = path.resolve(path.dirname(file), specifier);
    if (!target.startsWith(serverDir + path.sep)) return [];
    const from = partOf(file);
    const to = partOf(target);
    return from === to ? [] : [{ from, to, line: `${path.relative(serverDir, file)} -> ${path.relative(serverDir, target)}` }];
  }));
}

describe('the layers of server/', () => {
  it('import only downwards', () => {
    const edges = crossImports();
    expect(edges.length, 'the parts of server/ import each other').toBeGreaterThan(20);
    const upOrSideways = edges.filter((e) => layerOf(e.to) >= layerOf(e.from)).map((e) => e.line);
    expect(upOrSideways).toEqual([]);
  });

  it('would catch an import that goes up', () => {
    // The check itself on a known edge: service/ imports engine/, so engine/ importing service/ would be caught.
    expect(crossImports().some((e) => e.from === 'service' && e.to === 'engine')).toBe(true);
    expect(layerOf('service')).toBeGreaterThan(layerOf('engine'));
  });

  it('let the dashboard and the data sets reach the service only through its narrow faces', () => {
    // Not the JobHub or ModelRegistry classes: the interfaces of hub-ports.ts, and the edge's shared helpers.
    const outward = new Set(['hub-ports.ts', 'validation.ts', 'auth.ts', 'proto-convert.ts', 'coalescing-queue.ts',
      'request-decoding.ts']);
    const edges = crossImports().filter((e) => (e.from === 'dashboard' || e.from === 'datasets') && e.to === 'service');
    expect(edges.length).toBeGreaterThan(5);
    const inward = edges.filter((e) => !outward.has(path.basename(e.line.split(' -> ')[1]!).replace(/\.js$/, '.ts')));
    expect(inward.map((e) => e.line)).toEqual([]);
  });
});
