import { describe, expect, it } from 'vitest';
import { Ledger } from '../harness/ledger.ts';

function ledger() {
  const l = new Ledger();
  l.sent({ id: 'a:0', sender: 'a', seq: 0, to: { room: 'r' }, addressed: ['b', 'c'] });
  l.sent({ id: 'a:1', sender: 'a', seq: 1, to: { room: 'r' }, addressed: ['b', 'c'] });
  l.acked('a:0');
  l.acked('a:1');
  return l;
}

describe('chaos ledger', () => {
  it('ledger - every acknowledged message once to every addressed client: no problem', () => {
    const l = ledger();
    for (const c of ['b', 'c']) for (const id of ['a:0', 'a:1']) l.delivered(c, id, 'room:r');
    expect(l.verdict()).toEqual([]);
    expect(l.counts()).toMatchObject({ sent: 2, acked: 2, expected: 4, delivered: 4, lost: 0, duplicated: 0 });
  });

  it('ledger - counts a lost, a duplicated, an out-of-order and a stray delivery', () => {
    const l = ledger();
    l.delivered('b', 'a:1', 'room:r');
    l.delivered('b', 'a:0', 'room:r');
    l.delivered('b', 'a:0', 'room:r');
    l.delivered('c', 'a:0', 'room:r');
    l.delivered('a', 'a:0', 'room:r');
    l.delivered('z', 'a:0', 'room:r');
    expect(l.counts()).toMatchObject({ lost: 1, duplicated: 1, outOfOrder: 1, stray: 1, echoes: 1 });
    expect(l.verdict()).toHaveLength(4);
  });

  it('ledger - an unacknowledged send may be delivered once or fail; a pending one is a problem', () => {
    const l = new Ledger();
    l.sent({ id: 'a:0', sender: 'a', seq: 0, to: { user: 'b' }, addressed: ['b'] });
    l.sent({ id: 'a:1', sender: 'a', seq: 1, to: { user: 'b' }, addressed: ['b'] });
    l.sent({ id: 'a:2', sender: 'a', seq: 2, to: { user: 'b' }, addressed: ['b'] });
    l.failed('a:0', 'send_timeout');
    l.failed('a:1', 'send_timeout');
    l.delivered('b', 'a:1', 'inbox');
    expect(l.counts()).toMatchObject({ failed: 2, failedUndelivered: 1, pending: 1, lost: 0 });
    expect(l.verdict()).toEqual(['1 sends neither acknowledged nor failed']);
  });
});
