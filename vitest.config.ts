import { defineConfig } from 'vitest/config';

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Builds dist/ if stale: the CLI that tests start is the compiled one (see the file).
    globalSetup: ['test/harness/global-setup.ts'],
    // The JSON report lets .ci/run print one plain "N passed, N failed" line.
    reporters: ['default', 'json'],
    outputFile: { json: '.test-results.json' },
    pool: 'forks',
    testTimeout: 30_000,
    hookTimeout: 60_000,
    // Two cores: more parallel files only make real processes slower.
    maxWorkers: 2,
    minWorkers: 1,
  },
});
