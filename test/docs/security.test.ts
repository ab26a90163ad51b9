/**
 * One source of truth for the bus permissions: every right in src/bus/permissions.ts is listed
 * under its role in docs/security.md, as a table row `| publish | \`subject\` | …` (or
 * subscribe), so the page cannot drift from what `chatgate nats` writes into the server config.
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { BUS_ROLES, busPermissions } from '../../src/bus/permissions.ts';

const security = readFileSync(new URL('../../docs/security.md', import.meta.url), 'utf8');

/** The text of `### <role>` up to the next heading. */
function section(role: string): string {
  const start = security.indexOf(`\n### ${role}\n`);
  expect(start, `### ${role} in docs/security.md`).toBeGreaterThanOrEqual(0);
  const end = security.indexOf('\n#', start + 1);
  return security.slice(start, end < 0 ? undefined : end);
}

const escape = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');

test('docs - every bus permission of every role is listed in docs/security.md', () => {
  for (const role of BUS_ROLES) {
    const text = section(role);
    const p = busPermissions[role];
    for (const [may, grants] of [['publish', p.publish], ['subscribe', p.subscribe]] as const) {
      for (const g of grants) {
        expect(text, `${role} ${may} ${g.subject}`).toMatch(new RegExp(`^\\| ${may} \\| \`${escape(g.subject)}\``, 'm'));
      }
    }
    for (const subject of p.denySubscribe ?? []) expect(text, `${role} deny ${subject}`).toContain(`\`${subject}\``);
    expect(text.includes('allow_responses'), `${role} allow_responses`).toBe(p.allowResponses);
  }
});

/** The subjects in backticks of one cell, e.g. `chatgate.v1.user.*`; a `(queue \`name\` …)` is not one. */
const subjectsIn = (cell: string) =>
  [...cell.replace(/\(queue [^)]*\)/g, '').matchAll(/`([^`\s]+)`/g)].map((m) => m[1]!);

test('docs - every subject the role tables of docs/security.md list is in the permission table', () => {
  for (const role of BUS_ROLES) {
    const p = busPermissions[role];
    const granted = { publish: p.publish.map((g) => g.subject), subscribe: p.subscribe.map((g) => g.subject) };
    for (const row of section(role).matchAll(/^\| (publish|subscribe) \| ([^|]+) \|/gm)) {
      const may = row[1] as 'publish' | 'subscribe';
      for (const subject of subjectsIn(row[2]!)) expect(granted[may], `${role} ${may} ${subject}`).toContain(subject);
    }
  }
  // The "Who may do what" table of the Revocations section: its publish and subscribe columns.
  const revocations = security.slice(security.indexOf('\n## Revocations\n'), security.indexOf('\n## Limits\n'));
  const rows = [...revocations.matchAll(/^\| (auth|gateway) [^|]*\| [^|]* \| ([^|]*) \| ([^|]*) \|$/gm)];
  expect(rows.length, 'the Who may do what table').toBe(2);
  for (const [, role, publishes, subscribes] of rows) {
    const p = busPermissions[role as 'auth' | 'gateway'];
    for (const subject of subjectsIn(publishes!).filter((s) => s.includes('.'))) {
      expect(p.publish.map((g) => g.subject), `${role} publishes ${subject}`).toContain(subject);
    }
    for (const subject of subjectsIn(subscribes!).filter((s) => s.includes('.'))) {
      expect(p.subscribe.map((g) => g.subject), `${role} subscribes ${subject}`).toContain(subject);
    }
  }
});
