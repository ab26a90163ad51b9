/**
 * Each pure module of src/ that the mutation run mutates loads. Their schemas are built when the
 * module loads, so a change that breaks one (a discriminator renamed, an option without its
 * shape) makes every file that imports the module fail before any test runs, which StrykerJS
 * counts as no test failing; here it fails a test (see docs/testing.md).
 */
import { expect, test } from 'vitest';

test.each(['codec', 'subjects', 'tokens', 'config'])('unit - src/%s.ts loads', async (name) => {
  const mod = (await import(`../../src/${name}.ts`)) as Record<string, unknown>;
  expect(Object.keys(mod).length).toBeGreaterThan(0);
});
