// @ts-check
/**
 * `npm run mutation`: StrykerJS mutates the machines and the pure modules of src/ and runs, for
 * each mutant, the tests of vitest.mutation.config.ts that cover it. Not part of `npm test`; the
 * report goes to reports/mutation/ (ignored). See docs/testing.md for the figures and for each
 * survivor judged equivalent.
 * @type {import('@stryker-mutator/api/core').PartialStrykerOptions}
 */
export default {
  testRunner: 'vitest',
  plugins: ['@stryker-mutator/vitest-runner'],
  // related: false runs every test of the mutation config, not only those that import the mutated
  // file: test/machines/load.test.ts and the docs tests load the machines dynamically.
  vitest: { configFile: 'vitest.mutation.config.ts', related: false },
  mutate: ['machines/**/*.ts', 'src/gateway/codec.ts', 'src/subjects.ts', 'src/auth/tokens.ts', 'src/config.ts'],
  coverageAnalysis: 'perTest',
  // Two cores, shared with real nats-server processes when the suite runs: one mutant at a time.
  // `npx stryker run --concurrency 2` on an idle machine halves the time.
  concurrency: 1,
  timeoutMS: 10_000,
  reporters: ['clear-text', 'progress', 'html', 'json'],
  htmlReporter: { fileName: 'reports/mutation/index.html' },
  jsonReporter: { fileName: 'reports/mutation/mutation.json' },
  tempDirName: '.stryker-tmp',
  thresholds: { high: 97, low: 90, break: null },
};
