/**
 * `chatgate` as a real child process, with its output collected and bounded waits on it. Every
 * process started here is killed by `stopAll()` (tests call it in afterAll), also on failure.
 * It is the package's own bin, which runs the compiled CLI in dist/; global-setup.ts builds
 * dist/ from the sources under test before any test starts.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { until } from './sync.ts';

const BIN = fileURLToPath(new URL('../../bin/chatgate.js', import.meta.url));
const running = new Set<ChatgateProcess>();

export class ChatgateProcess {
  readonly child: ChildProcess;
  stdout = '';
  stderr = '';
  readonly exited: Promise<number | null>;
  #waiters: Array<() => void> = [];

  constructor(args: string[], env: NodeJS.ProcessEnv = {}) {
    this.child = spawn(process.execPath, [BIN, ...args], {
      // No drain unless a test asks for one (drain.test.ts): stopping a gateway stays quick.
      env: { ...process.env, LOG_LEVEL: 'info', DRAIN_GRACE_MS: '0', DRAIN_WINDOW_MS: '0', ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    running.add(this);
    this.child.stdout!.on('data', (d: Buffer) => {
      this.stdout += d.toString();
      this.#wake();
    });
    this.child.stderr!.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.#wake();
    });
    this.exited = new Promise((resolve) =>
      this.child.once('exit', (code) => {
        running.delete(this);
        this.#wake();
        resolve(code);
      }),
    );
  }

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** Waits until stdout matches `pattern`; fails after `timeoutMs` or if the process exits. */
  async waitFor(pattern: RegExp, timeoutMs = 15_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const match = pattern.exec(this.stdout);
      if (match) return match;
      if (this.child.exitCode !== null) throw new Error(`process exited (${this.child.exitCode}): ${this.stderr}`);
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}; stdout: ${this.stdout}; stderr: ${this.stderr}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  /** SIGTERM, then SIGKILL if it has not exited within `graceMs`. Returns the exit code. */
  async stop(graceMs = 10_000): Promise<number | null> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      this.child.kill('SIGTERM');
      const timer = setTimeout(() => this.child.kill('SIGKILL'), graceMs);
      await this.exited;
      clearTimeout(timer);
    }
    return this.child.exitCode;
  }
}

/** Runs `chatgate ...args` to completion. */
export async function runChatgate(args: string[], env: NodeJS.ProcessEnv = {}) {
  const p = new ChatgateProcess(args, env);
  const code = await p.exited;
  return { code, stdout: p.stdout, stderr: p.stderr };
}

export async function stopAll(): Promise<void> {
  await Promise.all([...running].map((p) => p.stop()));
}

/** The state letter of /proc/<pid>/stat (Linux): `T` once a SIGSTOP has taken effect. */
export function processState(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '')[0];
  } catch {
    return undefined; // gone
  }
}

/**
 * SIGSTOPs `child` and resolves once it has really stopped: `kill` only queues the signal, and
 * on a loaded machine a server can still answer a request sent right after it (seen: a publish
 * stored and acknowledged by a nats-server that a test believed paused).
 */
export async function pauseProcess(child: ChildProcess): Promise<void> {
  child.kill('SIGSTOP');
  await until(`process ${child.pid} to stop`, () => processState(child.pid!) === 'T', 5000);
}

