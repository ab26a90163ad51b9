/**
 * The inspector and demo chat pages in a real browser: `chatgate dev` as a child process (free
 * ports everywhere), Debian's headless chromium driven by playwright-core. Without
 * /usr/bin/chromium every test here fails with the command that installs it.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { Locator, Page, WebSocketRoute } from 'playwright-core';
import { ChatgateProcess } from '../harness/process.ts';
import { launchChromium, type TestBrowser } from '../harness/browser.ts';
import { TestClient } from '../harness/client.ts';
import { loadSigningKeys } from '../../src/auth/keys.ts';
import { mintToken } from '../../src/auth/tokens.ts';

const WAIT = { timeout: 10_000, interval: 100 };

let home: string;
let dev: ChatgateProcess | undefined;
let browser: TestBrowser | undefined;
let adminUrl: string;
let demoUrl: string;
let adminToken: string;
const clients: TestClient[] = [];
/** Why the setup failed (no chromium, say): each test fails with it, none is skipped. */
let setupError: unknown;

beforeAll(async () => {
  home = await mkdtemp(join(tmpdir(), 'chatgate-browser-'));
  try {
    // The browser first: without chromium there is nothing to start the rest for.
    browser = await launchChromium();
    dev = new ChatgateProcess(['dev'], { PORT: '0', NATS_PORT: '-1', ADMIN_PORT: '0', CHATGATE_HOME: home, LOG_LEVEL: 'warn' });
    await dev.waitFor(/Ctrl-C stops everything/, 30_000);
    adminUrl = /Inspector\s+(http:\S+)/.exec(dev.stdout)![1]!;
    demoUrl = /Demo chat\s+(http:\S+)/.exec(dev.stdout)![1]!;
    adminToken = /Admin token\s+([A-Za-z0-9_-]{16,})/.exec(dev.stdout)![1]!;
  } catch (err) {
    setupError = err;
  }
});

beforeEach(() => {
  if (setupError) throw setupError;
});

afterAll(async () => {
  for (const c of clients) c.close();
  await browser?.close();
  await dev?.stop();
  await rm(home, { recursive: true, force: true });
});

/** The gateway's WebSocket URL, from the banner. */
const wsUrl = () => /WebSocket\s+(ws:\S+)/.exec(dev!.stdout)![1]!;

async function client(sub: string): Promise<{ client: TestClient; session: string }> {
  const token = await mintToken(await loadSigningKeys(home), { sub, rooms: '*' });
  const c = new TestClient(wsUrl(), { token });
  clients.push(c);
  const welcome = await c.type('welcome');
  return { client: c, session: welcome.session as string };
}

/** The number in the `active (n)` label of the connection diagram. */
async function activeCount(diagram: Locator): Promise<number | undefined> {
  const text = (await diagram.textContent()) ?? '';
  const match = /(?:^|[^A-Za-z])active \((\d+)\)/.exec(text);
  return match ? Number(match[1]) : undefined;
}

/** Logs in through the form, from no login at all (each test starts logged out). */
async function logIn(page: Page): Promise<void> {
  await page.context().clearCookies();
  await page.goto(adminUrl);
  await page.fill('#token', adminToken);
  await Promise.all([page.waitForURL(adminUrl), page.click('#login button[type=submit]')]);
}

describe('inspector', () => {
  it('inspector - the API and the page need the admin token, never in a URL', async () => {
    expect((await fetch(`${adminUrl}api/machines`)).status).toBe(401);
    expect((await fetch(`${adminUrl}api/machines`, { headers: { authorization: 'Bearer not-the-token-at-all' } })).status).toBe(401);
    const ok = await fetch(`${adminUrl}api/machines`, { headers: { authorization: `Bearer ${adminToken}` } });
    expect(ok.status).toBe(200);
    const refused = await fetch(`${adminUrl}login`, {
      method: 'POST',
      body: new URLSearchParams({ token: 'not-the-token-at-all' }),
      redirect: 'manual',
    });
    expect(refused.status).toBe(401);
    expect(refused.headers.get('set-cookie')).toBeNull();

    const page = await browser!.context.newPage();
    try {
      await logIn(page);
      expect(page.url()).toBe(adminUrl);
      const cookie = (await browser!.context.cookies(adminUrl)).find((c) => c.name === 'chatgate_admin');
      expect(cookie?.httpOnly).toBe(true);
      expect(cookie?.sameSite).toBe('Strict');
      expect(cookie?.value).not.toContain(adminToken);
    } finally {
      await page.close();
    }
  });

  it('inspector - every machine is drawn and the count of active follows a connection', async () => {
    const { machines } = (await (
      await fetch(`${adminUrl}api/machines`, { headers: { authorization: `Bearer ${adminToken}` } })
    ).json()) as { machines: Array<{ id: string }> };
    expect(machines.map((m) => m.id).sort()).toEqual(['breaker', 'client', 'connection']);

    const page = await browser!.context.newPage();
    const errors: string[] = [];
    page.on('pageerror', (err) => errors.push(err.message));
    try {
      await logIn(page);
      for (const { id } of machines) {
        await page.locator(`.machine[data-machine="${id}"] .diagram svg`).waitFor({ state: 'attached' });
      }
      const diagram = page.locator('.machine[data-machine="connection"] .diagram svg');
      await expect.poll(() => activeCount(diagram), WAIT).toBeTypeOf('number');
      const before = (await activeCount(diagram))!;

      const { client: alice, session } = await client('alice');
      await expect.poll(() => activeCount(diagram), WAIT).toBe(before + 1);

      // Picked in the list: its states are highlighted and its events arrive live.
      await page.locator(`#connections tr[data-session="${session}"]`).click();
      await expect.poll(() => page.locator('#selected-state').textContent(), WAIT).toContain('open.active.token.valid');
      await expect
        .poll(() => diagram.locator('.current').evaluateAll((nodes) => nodes.map((n) => n.id).join(' ')), WAIT)
        .toContain('open_active_token_valid');
      expect((await alice.request({ type: 'join', id: 'j1', room: 'lobby' })).type).toBe('ack');
      await expect.poll(() => page.locator('#events').textContent(), WAIT).toContain('frame.join');

      alice.close();
      await expect.poll(() => activeCount(diagram), WAIT).toBe(before);
      await expect.poll(() => page.locator('#events').textContent(), WAIT).toContain('the connection has ended');
      expect(errors).toEqual([]);
    } finally {
      await page.close();
    }
  });
});

describe('demo', () => {
  async function join(page: Page, user: string, room: string): Promise<void> {
    await page.goto(demoUrl);
    await page.fill('#user', user);
    await page.click('#connect');
    await expect.poll(() => page.locator('#status').textContent(), WAIT).toContain(`connected as ${user}`);
    await page.fill('#room', room);
    await page.click('#join');
    await expect.poll(() => page.locator('#rooms').textContent(), WAIT).toContain(`#${room}`);
  }

  async function send(page: Page, kind: 'room' | 'user', to: string, text: string): Promise<void> {
    await page.selectOption('#to-kind', kind);
    await page.fill('#to', to);
    await page.fill('#text', text);
    await page.click('#send');
  }

  it('demo - two pages pick users, join a room and chat', async () => {
    const alice = await browser!.context.newPage();
    const bob = await browser!.context.newPage();
    try {
      await join(alice, 'alice', 'lobby');
      await join(bob, 'bob', 'lobby');

      await send(alice, 'room', 'lobby', 'hello, lobby');
      await expect.poll(() => bob.locator('#log li.message').allTextContents(), WAIT).toContain('alice → #lobby: hello, lobby');

      await send(bob, 'user', 'alice', 'hi alice');
      await expect.poll(() => alice.locator('#log li.message').allTextContents(), WAIT).toContain('bob → you: hi alice');
      // A room message skips the sending page; the sender sees its own line once acknowledged.
      expect(await alice.locator('#log li.message').allTextContents()).not.toContain('alice → #lobby: hello, lobby');
      await expect.poll(() => alice.locator('#log li.own').allTextContents(), WAIT).toContain('you → #lobby: hello, lobby');
    } finally {
      await alice.close();
      await bob.close();
    }
  });

  it('demo - the SDK in Chromium: the network drops, messages sent meanwhile wait in the outbox, and nothing is lost', async () => {
    const alice = await browser!.context.newPage();
    const bob = await browser!.context.newPage();
    // Bob's sockets go through the browser's WebSocket routing: `offline` refuses new ones, and
    // a drop cuts the current one on both sides, as a network would.
    let offline = false;
    const routes: Array<{ page: WebSocketRoute; server: WebSocketRoute }> = [];
    await bob.routeWebSocket(/\/ws$/, (ws) => {
      if (offline) return void ws.close({ code: 1006 });
      routes.push({ page: ws, server: ws.connectToServer() });
    });
    try {
      await join(alice, 'alice-sdk', 'sdk-room');
      await join(bob, 'bob-sdk', 'sdk-room');
      // The page runs the SDK bundle (an ES module served from the admin port), not its own client.
      expect(await bob.evaluate(() => typeof (globalThis as { chatgateDemo?: { client?: unknown } }).chatgateDemo?.client)).toBe('object');

      offline = true;
      const current = routes.at(-1)!;
      await current.server.close({ code: 1001, reason: 'network dropped' });
      await current.page.close({ code: 1006, reason: 'network dropped' });
      await expect.poll(() => bob.locator('#status').getAttribute('data-state'), WAIT).toBe('reconnecting');
      await send(bob, 'room', 'sdk-room', 'sent while offline 1');
      await send(bob, 'user', 'alice-sdk', 'sent while offline 2');
      // Not acknowledged while offline: no "you →" line yet.
      expect(await bob.locator('#log li.own').allTextContents()).not.toContain('you → #sdk-room: sent while offline 1');

      offline = false;
      await expect.poll(() => bob.locator('#status').getAttribute('data-state'), { timeout: 20_000, interval: 100 }).toBe('open');
      await expect
        .poll(() => alice.locator('#log li.message').allTextContents(), WAIT)
        .toEqual(expect.arrayContaining(['bob-sdk → #sdk-room: sent while offline 1', 'bob-sdk → you: sent while offline 2']));
      await expect.poll(() => bob.locator('#log li.own').allTextContents(), WAIT).toContain('you → #sdk-room: sent while offline 1');
      // Once each: the outbox re-sent each message once, and the room was re-joined.
      const got = await alice.locator('#log li.message').allTextContents();
      expect(got.filter((t) => t.includes('sent while offline 1'))).toHaveLength(1);
      await send(alice, 'room', 'sdk-room', 'after the drop');
      await expect.poll(() => bob.locator('#log li.message').allTextContents(), WAIT).toContain('alice-sdk → #sdk-room: after the drop');
    } finally {
      await alice.close();
      await bob.close();
    }
  });
});

