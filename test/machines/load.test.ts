/**
 * Each machine module loads and builds its machine. The other machine tests import the machines
 * statically, so a change that makes a module throw while it loads (a state without its initial
 * child, a target that does not resolve) fails their file before any test runs; here it fails a
 * test, which is what StrykerJS counts when it judges a mutant (`npm run mutation`).
 */
import { readdirSync } from 'node:fs';
import { expect, test } from 'vitest';

const machineFiles = readdirSync(new URL('../../machines/', import.meta.url)).filter((f) => f.endsWith('.machine.ts'));

test('machines - there are machine modules to load', () => {
  expect(machineFiles).toEqual(['circuit-breaker.machine.ts', 'client.machine.ts', 'connection.machine.ts']);
});

test.each(machineFiles)('machines - %s loads and builds its machine', async (file) => {
  const mod = (await import(`../../machines/${file}`)) as Record<string, unknown>;
  const machines = Object.values(mod).filter(
    (v): v is { id: string; root: unknown } => typeof v === 'object' && v !== null && 'root' in v && 'id' in v,
  );
  expect(machines).toHaveLength(1);
  const ids: Record<string, string> = { 'connection.machine.ts': 'connection', 'circuit-breaker.machine.ts': 'breaker', 'client.machine.ts': 'client' };
  expect(machines[0]!.id).toBe(ids[file]);
});
