/**
 * One source of truth for codes: every close code and error code in machines/codes.ts is
 * documented in docs/protocol.md. (That each close code is reachable from the machine is checked
 * in test/machines/connection.test.ts.)
 */
import { readFileSync } from 'node:fs';
import { expect, test } from 'vitest';
import { CloseCode, ErrorCode, closeCodeMeaning, errorCodeMeaning } from '../../machines/codes.ts';

const protocol = readFileSync(new URL('../../docs/protocol.md', import.meta.url), 'utf8');

test('docs - every close code has its row in docs/protocol.md', () => {
  for (const [name, code] of Object.entries(CloseCode)) {
    expect(protocol, `CloseCode.${name}`).toMatch(new RegExp(`^\\| ${code} \\|`, 'm'));
    expect(closeCodeMeaning[code], `meaning of ${code}`).toBeTruthy();
  }
});

test('docs - every error code is documented in docs/protocol.md', () => {
  for (const code of Object.values(ErrorCode)) {
    expect(protocol, code).toMatch(new RegExp(`^\\| \`${code}\` \\|`, 'm'));
    expect(errorCodeMeaning[code]).toBeTruthy();
  }
});
