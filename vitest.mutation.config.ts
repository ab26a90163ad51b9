import { defineConfig } from 'vitest/config';

/**
 * The tests StrykerJS runs for each mutant (`npm run mutation`): the machine tests and the unit
 * tests of the pure modules, none of which starts a process or opens a socket. The integration,
 * model and browser tests stay out: they are slow and they prove other things (docs/testing.md).
 */
export default defineConfig({
  test: {
    include: ['test/machines/**/*.test.ts', 'test/unit/**/*.test.ts', 'test/docs/*.test.ts'],
    pool: 'forks',
    testTimeout: 30_000,
  },
});
