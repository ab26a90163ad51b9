/**
 * The codec's fast decoder of `send` frames (`decodeSendFast`, no zod) against the schema
 * (`decodeFrameValue`): for any frame, what the node makes of it is what the schema alone makes
 * of it, the refusal and its reason included. The frames are built near the edges the schema
 * draws: id lengths and kinds, destinations with zero, one or two keys, ids of 256 and 257 UTF-16
 * units, lone surrogates, bodies nested 31 to 34 levels, keys of 0, 64 and 65 units, extra keys.
 */
import { expect, test } from 'vitest';
import fc from 'fast-check';
import { decodeClientFrame, decodeFrameValue, decodeSendFast, MAX_BODY_DEPTH } from '../../src/gateway/codec.ts';

const edgeString = fc.oneof(
  fc.string({ maxLength: 8 }),
  fc.string({ unit: 'binary', maxLength: 8 }),
  fc.constantFrom('', 'a\uD800b', '\uDC00', '😀'.repeat(64), '😀'.repeat(65), 'x'.repeat(64), 'x'.repeat(65)),
  fc.constantFrom('x'.repeat(128), 'x'.repeat(129), 'u'.repeat(256), 'u'.repeat(257), `😀${'u'.repeat(254)}`, `😀${'u'.repeat(255)}`),
);

const frameId = fc.oneof(
  edgeString,
  fc.integer(),
  fc.constantFrom(Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1, -Number.MAX_SAFE_INTEGER, 1.5, 1e300, null, true, [], {}),
);

const nested = (depth: number): unknown => (depth === 0 ? 0 : [nested(depth - 1)]);
const body = fc.oneof(
  fc.jsonValue({ maxDepth: 3 }),
  fc.integer({ min: MAX_BODY_DEPTH - 1, max: MAX_BODY_DEPTH + 2 }).map(nested),
  fc.integer({ min: MAX_BODY_DEPTH - 1, max: MAX_BODY_DEPTH + 2 }).map((d) => ({ a: nested(d - 1) })),
);

const destination = fc.oneof(
  fc.record({ user: edgeString }),
  fc.record({ room: edgeString }),
  fc.record({ user: edgeString, room: edgeString }),
  fc.record({ user: fc.oneof(fc.integer(), fc.constant(null)) }),
  fc.record({ room: edgeString, extra: fc.jsonValue({ maxDepth: 1 }) }),
  fc.constantFrom({}, null, [], 'bob', [{ user: 'bob' }]),
);

/** Well-formed sends, so that the fast path's acceptance is tried often, not only its refusals. */
const wellFormed = fc.record(
  {
    type: fc.constant<unknown>('send'),
    id: fc.oneof(fc.integer(), fc.string({ maxLength: 128 })) as fc.Arbitrary<unknown>,
    to: fc.oneof(
      fc.record({ user: fc.string({ minLength: 1, maxLength: 40 }) }),
      fc.record({ room: fc.string({ minLength: 1, maxLength: 40 }) }),
    ) as fc.Arbitrary<unknown>,
    body: fc.jsonValue({ maxDepth: 4 }) as fc.Arbitrary<unknown>,
    key: fc.string({ minLength: 1, maxLength: 64 }) as fc.Arbitrary<unknown>,
  },
  { requiredKeys: ['type', 'id', 'to', 'body'] },
);

/** One change to a well-formed send, near an edge the schema draws. */
const change = fc.oneof(
  fc.record({ field: fc.constant('id'), value: frameId }),
  fc.record({ field: fc.constant('to'), value: destination }),
  fc.record({ field: fc.constant('body'), value: body }),
  fc.record({ field: fc.constant('key'), value: fc.oneof(edgeString, fc.integer(), fc.constant(null)) }),
  fc.record({ field: fc.constantFrom('extra', '__proto__', 'since'), value: fc.jsonValue({ maxDepth: 1 }) }),
  fc.record({ field: fc.constant('type'), value: fc.constantFrom('signal', 'SEND', 'join', 1) }),
  fc.record({ field: fc.constantFrom('id', 'to', 'body', 'type'), value: fc.constant(undefined) }),
);

/** A well-formed send with up to two changes. */
const frame = fc.tuple(wellFormed, fc.array(change, { maxLength: 2 })).map(([f, changes]) => {
  const out: Record<string, unknown> = { ...f };
  for (const { field, value } of changes) {
    if (value === undefined) delete out[field];
    else Object.defineProperty(out, field, { value, enumerable: true, writable: true, configurable: true });
  }
  return out;
});

test('codec - the fast send decoder makes of any frame what the schema makes of it', () => {
  let fast = 0;
  fc.assert(
    fc.property(frame, (f) => {
      const text = JSON.stringify(f);
      // What the node does (the fast path first) is what the schema alone does, refusals included.
      expect(decodeClientFrame(text)).toEqual(decodeFrameValue(JSON.parse(text)));
      const accepted = decodeSendFast(JSON.parse(text));
      if (accepted !== undefined) {
        fast++;
        expect(accepted).toEqual(decodeFrameValue(JSON.parse(text)));
      }
    }),
    { numRuns: 3000 },
  );
  expect(fast).toBeGreaterThan(300);
});

test('codec - a send with an own __proto__ key or an extra key is left to the schema', () => {
  const text = '{"type":"send","id":1,"to":{"user":"bob"},"body":1,"__proto__":{"x":1}}';
  expect(decodeSendFast(JSON.parse(text))).toBeUndefined();
  expect(decodeClientFrame(text)).toEqual(decodeFrameValue(JSON.parse(text)));
  const to = '{"type":"send","id":1,"to":{"__proto__":"bob"},"body":1}';
  expect(decodeSendFast(JSON.parse(to))).toBeUndefined();
  expect(decodeClientFrame(to)).toMatchObject({ type: 'frame.invalid', id: 1 });
});
