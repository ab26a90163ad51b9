/**
 * The wire codec (src/gateway/codec.ts) against docs/protocol.md's frame rules: which text becomes which
 * machine event, the bounds on ids, and the NATS message framing.
 */
import { describe, expect, it } from 'vitest';
import { decodeChatMessage, decodeClientFrame, encodeChatMessage, encodeServerFrame } from '../../src/gateway/codec.ts';

const decode = (frame: unknown) => decodeClientFrame(typeof frame === 'string' ? frame : JSON.stringify(frame));

describe('codec - client frames', () => {
  it('codec - each frame type becomes its machine event', () => {
    expect(decode({ type: 'auth', token: 't' })).toEqual({ type: 'frame.auth', token: 't' });
    expect(decode({ type: 'send', id: 1, to: { user: 'bob' }, body: { a: 1 } })).toEqual({
      type: 'frame.send',
      id: 1,
      to: { user: 'bob' },
      body: { a: 1 },
    });
    expect(decode({ type: 'send', id: 'x', to: { room: 'lobby' }, body: null })).toEqual({
      type: 'frame.send',
      id: 'x',
      to: { room: 'lobby' },
      body: null,
    });
    expect(decode({ type: 'join', id: 2, room: 'r' })).toEqual({ type: 'frame.join', id: 2, room: 'r' });
    expect(decode({ type: 'leave', id: 3, room: 'r' })).toEqual({ type: 'frame.leave', id: 3, room: 'r' });
    expect(decode({ type: 'refresh', id: 4, token: 't2' })).toEqual({ type: 'frame.refresh', id: 4, token: 't2' });
    expect(decode({ type: 'ping', id: 5 })).toEqual({ type: 'frame.ping', id: 5 });
    expect(decode({ type: 'ping' })).toEqual({ type: 'frame.ping', id: undefined });
  });

  it('codec - text that is not JSON is invalid, with no id', () => {
    expect(decode('{not json')).toEqual({ type: 'frame.invalid', reason: 'frame is not JSON' });
  });

  it('codec - an unknown type is invalid, with the frame id', () => {
    expect(decode({ type: 'dance', id: 1 })).toMatchObject({ type: 'frame.invalid', id: 1, reason: expect.stringMatching(/^type: /) });
  });

  it('codec - a frame id is a string of at most 128 characters or a safe integer', () => {
    const join = (id: unknown) => decode({ type: 'join', id, room: 'r' });
    expect(join('x'.repeat(128))).toMatchObject({ type: 'frame.join', id: 'x'.repeat(128) });
    expect(join('x'.repeat(129))).toMatchObject({ type: 'frame.invalid', id: undefined, reason: expect.stringMatching(/^id: /) });
    expect(join(Number.MAX_SAFE_INTEGER)).toMatchObject({ type: 'frame.join' });
    expect(join(Number.MAX_SAFE_INTEGER + 1)).toMatchObject({ type: 'frame.invalid', id: undefined });
    expect(join(1.5)).toMatchObject({ type: 'frame.invalid', id: undefined });
    expect(join(undefined)).toMatchObject({ type: 'frame.invalid', id: undefined });
  });

  it('codec - user and room ids are 1–256 UTF-16 code units of well-formed Unicode', () => {
    const to = (user: string) => decode({ type: 'send', id: 7, to: { user }, body: 1 });
    const at256 = `😀${'u'.repeat(254)}`;
    expect(at256.length).toBe(256);
    expect(to(at256)).toMatchObject({ type: 'frame.send' });
    expect(to(`${at256}u`)).toMatchObject({ type: 'frame.invalid', id: 7, reason: expect.stringMatching(/^to/) });
    expect(to('')).toMatchObject({ type: 'frame.invalid', id: 7 });
    expect(to('a\uD800b')).toMatchObject({ type: 'frame.invalid', id: 7 });
    const join = (room: string) => decode({ type: 'join', id: 8, room });
    expect(join('r'.repeat(256))).toMatchObject({ type: 'frame.join' });
    expect(join('r'.repeat(257))).toMatchObject({ type: 'frame.invalid', id: 8, reason: expect.stringMatching(/^room: /) });
    expect(join('\uDC00')).toMatchObject({ type: 'frame.invalid', id: 8, reason: 'room: must be well-formed Unicode' });
  });

  it('codec - a send needs a body and exactly one of user or room', () => {
    expect(decode({ type: 'send', id: 1, to: { user: 'b' } })).toMatchObject({ type: 'frame.invalid', id: 1, reason: expect.stringMatching(/^body: /) });
    expect(decode({ type: 'send', id: 1, to: { user: 'b', room: 'r' }, body: 1 })).toMatchObject({ type: 'frame.invalid', id: 1 });
    expect(decode({ type: 'send', id: 1, to: {}, body: 1 })).toMatchObject({ type: 'frame.invalid', id: 1 });
  });

  it('codec - tokens must be non-empty; the reason never repeats the offending value', () => {
    expect(decode({ type: 'auth', token: '' })).toMatchObject({ type: 'frame.invalid', reason: expect.stringMatching(/^token: /) });
    expect(decode({ type: 'refresh', id: 1, token: 5 })).toMatchObject({ type: 'frame.invalid', id: 1 });
    const secret = 'eyJ-secret-token-value';
    const bad = decode({ type: 'auth', token: secret, extra: { token: secret } });
    expect(JSON.stringify(decode({ type: 'refresh', id: { token: secret }, token: secret }))).not.toContain(secret);
    expect(bad).toEqual({ type: 'frame.auth', token: secret });
  });

  it('codec - a frame that is JSON but not an object is invalid with no id', () => {
    for (const value of ['null', '5', '"auth"', '[]']) {
      expect(decode(value)).toMatchObject({ type: 'frame.invalid', id: undefined });
    }
  });
});

describe('codec - server frames and NATS messages', () => {
  it('codec - server frames are their JSON', () => {
    expect(JSON.parse(encodeServerFrame({ type: 'pong', id: 3 }))).toEqual({ type: 'pong', id: 3 });
  });

  it('codec - a chat message is one header line then the message frame, decoded back as it was', () => {
    const message = { msgId: 'm1', from: 'alice', to: { room: 'lobby' }, body: 'hi\nthere', ts: 1700000000123 };
    // A session id is a nuid: 22 base62 characters.
    const text = encodeChatMessage('Sx4bM2kq7TnY0rLc9vPa1Z', message);
    expect(text.split('\n')[0]).toBe('Sx4bM2kq7TnY0rLc9vPa1Z 1700000000123');
    const decoded = decodeChatMessage(new TextEncoder().encode(text))!;
    expect(decoded.origin).toBe('Sx4bM2kq7TnY0rLc9vPa1Z');
    expect(decoded.ts).toBe(1700000000123);
    expect(JSON.parse(decoded.frame.toString('utf8'))).toEqual({ type: 'message', ...message });
  });

  it('codec - a message to a user has an empty origin', () => {
    const text = encodeChatMessage('', { msgId: 'm', from: 'a', to: { user: 'b' }, body: 1, ts: 5 });
    expect(decodeChatMessage(Buffer.from(text))).toMatchObject({ origin: '', ts: 5 });
  });

  it('codec - a subarray of a larger buffer decodes from its own offset', () => {
    const text = encodeChatMessage('s', { msgId: 'm', from: 'a', to: { user: 'b' }, body: 1, ts: 9 });
    const big = Buffer.concat([Buffer.from('xx y\nzz'), Buffer.from(text)]);
    const decoded = decodeChatMessage(big.subarray(7))!;
    expect(decoded).toMatchObject({ origin: 's', ts: 9 });
    expect(JSON.parse(decoded.frame.toString())).toMatchObject({ type: 'message', msgId: 'm' });
  });

  it('codec - data without a header line is not a chat message', () => {
    expect(decodeChatMessage(Buffer.from('no newline here'))).toBeUndefined();
    expect(decodeChatMessage(Buffer.from('nospace\n{}'))).toBeUndefined();
    expect(decodeChatMessage(Buffer.from('a\nb c'))).toBeUndefined();
  });

  it('codec - a chat message is decoded only if the header is a session id (or empty) and digits, and the frame a whole message frame', () => {
    const message = { msgId: 'm', from: 'a', to: { room: 'r' }, body: 1, ts: 5 };
    const frame = JSON.stringify({ type: 'message', ...message });
    expect(decodeChatMessage(Buffer.from(`s1 5\n${frame}`))).toMatchObject({ origin: 's1', ts: 5 });
    expect(decodeChatMessage(Buffer.from(`${'s'.repeat(64)} 5\n${frame}`))).toMatchObject({ ts: 5 });
    // The header: base62 origin of at most 64 characters, then 1 to 15 digits.
    for (const header of ['session-1 5', 's.1 5', `${'s'.repeat(65)} 5`, 's1 5x', 's1 -5', 's1 ', 's1 1.5', `s1 ${'9'.repeat(16)}`, 's1  5']) {
      expect(decodeChatMessage(Buffer.from(`${header}\n${frame}`)), header).toBeUndefined();
    }
    // The frame: UTF-8 JSON with every field of a message frame.
    const { msgId: _msgId, ...withoutMsgId } = { type: 'message', ...message };
    const { body: _body, ...withoutBody } = { type: 'message', ...message };
    for (const bad of [
      '{}',
      'not json',
      '[]',
      'null',
      JSON.stringify({ ...message, type: 'ack' }),
      JSON.stringify(withoutMsgId),
      JSON.stringify(withoutBody),
      JSON.stringify({ type: 'message', ...message, to: null }),
      JSON.stringify({ type: 'message', ...message, ts: '5' }),
      JSON.stringify({ type: 'message', ...message, from: 7 }),
    ]) {
      expect(decodeChatMessage(Buffer.from(`s1 5\n${bad}`)), bad).toBeUndefined();
    }
    // A byte that is not UTF-8 inside the body string: the JSON would still parse (as U+FFFD).
    const withString = Buffer.from(`s1 5\n${JSON.stringify({ type: 'message', ...message, body: '~' })}`);
    expect(decodeChatMessage(withString)).toMatchObject({ ts: 5 });
    withString[withString.indexOf('~')] = 0xff;
    expect(decodeChatMessage(withString)).toBeUndefined();
  });
});
