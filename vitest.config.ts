import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // The store and fleet tests run against a local PostgreSQL: started here when it is installed but not running.
    globalSetup: ['test/postgres/global-setup.ts'],
    // Graph runs and finite differences take seconds on two cores; a shared CI box is slower still.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
    // Several test files run at once, each with servers and CLI processes of its own: one onnxruntime thread per
    // session keeps them from fighting over the cores (a process started by a test inherits this too).
    env: { RECITE_THREADS: '1' },
    // The JSON report lets CI print a plain "N passed, N failed" closing line.
    reporters: ['default', ['json', { outputFile: '.cache/test-results.json' }]],
  },
});
