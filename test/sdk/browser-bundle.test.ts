// The SDK must bundle for browsers: no Node built-ins anywhere in its import graph.
import { readdirSync, readFileSync } from 'node:fs';
import { builtinModules } from 'node:module';
import { join } from 'node:path';
import { build } from 'vite';
import { describe, expect, it } from 'vitest';

const sdkDir = 'sdk';

function sdkSources(dir = sdkDir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) return entry.name === 'dist' || entry.name === 'node_modules' ? [] : sdkSources(path);
    return entry.name.endsWith('.ts') ? [path] : [];
  });
}

describe('sdk for browsers', () => {
  it('imports no Node built-in module in its own files', () => {
    const builtins = new Set(builtinModules);
    for (const file of sdkSources()) {
      const specifiers = [...readFileSync(file, 'utf8').matchAll(/\bfrom\s+['"]([^'"]+)['"]/g)].map((m) => m[1]);
      for (const specifier of specifiers) {
        expect.soft(specifier.startsWith('node:') || builtins.has(specifier), `${file} imports ${specifier}`).toBe(false);
      }
    }
  });

  it('bundles for the browser with vite, dependencies included, without externalizing anything', async () => {
    const warnings: string[] = [];
    const output = await build({
      root: process.cwd(),
      configFile: false,
      logLevel: 'silent',
      build: {
        lib: { entry: join(sdkDir, 'index.ts'), formats: ['es'], fileName: 'recite-sdk' },
        write: false,
        minify: false,
        rollupOptions: { onwarn: (warning) => warnings.push(String(warning.message)) },
      },
    });
    const chunks = (Array.isArray(output) ? output : [output]).flatMap((o) => ('output' in o ? o.output : []));
    const code = chunks.map((c) => ('code' in c ? c.code : '')).join('\n');
    expect(warnings.filter((w) => /externalized for browser compatibility/.test(w))).toEqual([]);
    expect(code).not.toMatch(/__vite[-_]browser[-_]external/);
    expect(code).toContain('createReciteClient');
  });
});
