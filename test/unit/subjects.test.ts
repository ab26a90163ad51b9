/** Subject names (src/subjects.ts): one token per id, whatever the id holds. */
import { describe, expect, it } from 'vitest';
import { AUTH_QUEUE, decodeId, encodeId, isValidId, MAX_ID_LENGTH, REVOCATIONS_BUCKET, subjects } from '../../src/subjects.ts';

describe('subjects', () => {
  it('subjects - an id with dots, wildcards, spaces and emoji is one subject token, and decodes back', () => {
    for (const id of ['a.b', '*', '>', 'with space', '😀', 'é'.repeat(256)]) {
      const token = encodeId(id);
      expect(token).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(decodeId(token)).toBe(id);
      expect(subjects.user(id)).toBe(`chatgate.v1.user.${token}`);
      expect(subjects.room(id)).toBe(`chatgate.v1.room.${token}`);
      expect(subjects.recording(id)).toBe(`chatgate.v1.recording.${token}`);
    }
  });

  it('subjects - the fixed subjects, the revocations bucket and the queue group', () => {
    expect(subjects).toMatchObject({
      authVerify: 'chatgate.v1.auth.verify',
      authJwks: 'chatgate.v1.auth.jwks',
      authJwksAnnounce: 'chatgate.v1.auth.jwks.announce',
      authRevoke: 'chatgate.v1.auth.revoke',
      recordingAll: 'chatgate.v1.recording.*',
    });
    // Since issue 9 revocations are kept in a JetStream KV bucket, not published on a subject.
    expect(subjects).not.toHaveProperty('revoked');
    expect(REVOCATIONS_BUCKET).toBe('chatgate-revocations');
    expect(AUTH_QUEUE).toBe('chatgate-auth');
  });

  it('subjects - a valid id is 1–256 UTF-16 code units of well-formed Unicode', () => {
    expect(MAX_ID_LENGTH).toBe(256);
    expect(isValidId('a')).toBe(true);
    expect(isValidId('a'.repeat(256))).toBe(true);
    expect(isValidId(`😀${'a'.repeat(254)}`)).toBe(true);
    expect(isValidId(`😀${'a'.repeat(255)}`)).toBe(false);
    expect(isValidId('')).toBe(false);
    expect(isValidId('a\uD800')).toBe(false);
    expect(isValidId(5)).toBe(false);
    expect(isValidId(undefined)).toBe(false);
  });
});
