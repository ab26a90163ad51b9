/**
 * Each pure module of src/ that the mutation run mutates loads. Their schemas are built when the
 * module loads, so a change that breaks one (a discriminator renamed, an option without its
 * shape) makes every file that imports the module fail before any test runs, which StrykerJS
 * counts as no test failing; here it fails a test (see docs/testing.md).
 */
import { expect, test } from 'vitest';

// The same files as stryker.config.mjs's `mutate` list outside machines/; written out, since a
// dynamic import with a variable only reaches files of one folder.
const modules: Record<string, () => Promise<Record<string, unknown>>> = {
  'gateway/codec': () => import('../../src/gateway/codec.ts'),
  subjects: () => import('../../src/subjects.ts'),
  'auth/tokens': () => import('../../src/auth/tokens.ts'),
  config: () => import('../../src/config.ts'),
};

test.each(Object.keys(modules))('unit - src/%s.ts loads', async (name) => {
  const mod = await modules[name]!();
  expect(Object.keys(mod).length).toBeGreaterThan(0);
});
