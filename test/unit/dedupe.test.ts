/**
 * The JetStream message id of a `key` (`dedupeId`): keys of different users never meet
 * (docs/protocol.md, "Idempotent send"), and two different keys of one user never meet either.
 * User ids are any well-formed Unicode of 1–256 units (a NUL included); a key is any 1–64
 * character string (lone surrogates included: the schema does not ask more of a key).
 */
import { expect, test } from 'vitest';
import fc from 'fast-check';
import { dedupeId } from '../../src/durable/publish.ts';

test('dedupe - a NUL in a user id cannot make one user\'s key another user\'s', () => {
  expect(dedupeId('ann', 'x\0key')).not.toBe(dedupeId('ann\0x', 'key'));
});

test('dedupe - two keys that differ only in lone surrogates are two keys', () => {
  expect(dedupeId('ann', 'k\uD800')).not.toBe(dedupeId('ann', 'k\uDBFF'));
  expect(dedupeId('ann', 'k\uD800')).not.toBe(dedupeId('ann', 'k\uFFFD'));
});

test('dedupe - the id of a plain user and key is what it always was (a retry across an upgrade still dedupes)', () => {
  // sha256("ann\0c0ffee-7"), base64url: the form before NULs and lone surrogates were told apart.
  expect(dedupeId('ann', 'c0ffee-7')).toBe('Lhn0dGln5ev20L8GoOxJdjMJtK6k0-qfvyxzlr9-XOY');
});

test('dedupe - different (user, key) pairs never share an id', () => {
  const part = fc.array(fc.constantFrom('a', '\0', '\uD800', '\uDC00', '\uFFFD', '😀', 'é'), { minLength: 1, maxLength: 4 }).map((a) => a.join(''));
  const user = part.filter((u) => u.isWellFormed());
  fc.assert(
    fc.property(user, part, user, part, (u1, k1, u2, k2) => {
      fc.pre(u1 !== u2 || k1 !== k2);
      expect(dedupeId(u1, k1)).not.toBe(dedupeId(u2, k2));
    }),
    { numRuns: 5000 },
  );
});
