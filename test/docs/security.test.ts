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
