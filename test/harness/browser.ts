/**
 * Headless Chromium for the browser tests: Debian's `chromium` package, driven by playwright-core
 * through its executablePath, never a browser that Playwright downloads. Each launch gets a fresh
 * user-data-dir that `close()` removes; `close()` is bounded, and a browser that does not close
 * in time is killed by pid (the processes whose command line holds this launch's own
 * user-data-dir, so nothing else is touched).
 */
import { existsSync } from 'node:fs';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type BrowserContext } from 'playwright-core';

export const CHROMIUM = '/usr/bin/chromium';
export const CHROMIUM_ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

export interface TestBrowser {
  context: BrowserContext;
  /** Closes every page and the browser, kills it if it hangs, removes its profile. Idempotent. */
  close(): Promise<void>;
}

/** Fails, with the command that installs it, when Debian's chromium is not there. */
export function requireChromium(): void {
  if (!existsSync(CHROMIUM)) {
    throw new Error(
      `${CHROMIUM} is missing: the browser tests use Debian's chromium package, never a downloaded browser. ` +
        'Install it with `apt-get install chromium` (as root, or with sudo), or run `bash scripts/setup.sh`, the README install step, which does.',
    );
  }
}

async function pidsUsing(dir: string): Promise<number[]> {
  const pids: number[] = [];
  for (const entry of await readdir('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const cmdline = await readFile(`/proc/${entry}/cmdline`, 'utf8').catch(() => '');
    if (cmdline.split('\0').includes(`--user-data-dir=${dir}`)) pids.push(Number(entry));
  }
  return pids;
}

export async function launchChromium(timeoutMs = 30_000): Promise<TestBrowser> {
  requireChromium();
  const profile = await mkdtemp(join(tmpdir(), 'chatgate-chromium-'));
  let context: BrowserContext;
  try {
    context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: CHROMIUM_ARGS,
      timeout: timeoutMs,
      viewport: { width: 1280, height: 900 },
    });
  } catch (err) {
    await rm(profile, { recursive: true, force: true });
    throw err;
  }
  context.setDefaultTimeout(15_000);
  let closing: Promise<void> | undefined;
  const close = async () => {
    let timer: NodeJS.Timeout | undefined;
    const closed = await Promise.race([
      context.close().then(() => true, () => false),
      new Promise<boolean>((resolve) => (timer = setTimeout(() => resolve(false), 10_000))),
    ]);
    clearTimeout(timer);
    if (!closed) {
      for (const pid of await pidsUsing(profile)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // Already gone between the listing and the kill: nothing left to stop.
        }
      }
    }
    await rm(profile, { recursive: true, force: true });
  };
  return { context, close: () => (closing ??= close()) };
}
