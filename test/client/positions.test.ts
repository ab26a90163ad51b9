import { describe, expect, it } from 'vitest';
import { Positions, SEEN_WINDOW } from '../../src/client/positions.ts';
import type { MessageFrame } from '../../src/protocol.ts';

const message = (pos: string | undefined, to: MessageFrame['to'] = { room: 'r' }, msgId = `m-${pos}`): MessageFrame => ({
  type: 'message',
  msgId,
  from: 'a',
  to,
  body: null,
  ts: 0,
  ...(pos === undefined ? {} : { pos }),
});

describe('client positions', () => {
  it('positions - a message whose position was seen is dropped; the last position is kept per destination', () => {
    const p = new Positions();
    expect(p.accept(message('1'))).toBe(true);
    expect(p.accept(message('2'))).toBe(true);
    expect(p.accept(message('1'))).toBe(false);
    expect(p.accept(message('1', { user: 'me' }))).toBe(true);
    expect(p.last('room:r')).toBe('2');
    expect(p.last('inbox')).toBe('1');
  });

  it('positions - without a position the msgId stands in, and gives no resume point', () => {
    const p = new Positions();
    expect(p.accept(message(undefined, { user: 'me' }, 'x'))).toBe(true);
    expect(p.accept(message(undefined, { user: 'me' }, 'x'))).toBe(false);
    expect(p.last('inbox')).toBeUndefined();
  });

  it('positions - the seen window is bounded', () => {
    const p = new Positions();
    for (let i = 0; i <= SEEN_WINDOW; i++) p.accept(message(String(i)));
    // The oldest fell out of the window; the newest is still known.
    expect(p.accept(message('0'))).toBe(true);
    expect(p.accept(message(String(SEEN_WINDOW)))).toBe(false);
  });
});
