import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Graph runs and finite differences take seconds on two cores; a shared CI box is slower still.
    testTimeout: 120_000,
    hookTimeout: 120_000,
    pool: 'forks',
  },
});
