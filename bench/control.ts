/**
 * The control channel between `bench/run.ts` and the processes it starts (gateways, relays, the
 * auth service, load generators): requests over the Node IPC channel, each answered once.
 *
 * Child side: `serveControl(handlers)` answers requests, and exits when the parent goes away (the
 * IPC channel closes), so no child outlives a bench that was killed.
 * Parent side: `ChildProcess` forks a TypeScript entry point through tsx's ESM hooks, waits for
 * its `ready` message, sends requests with a deadline, and stops it (a `shutdown` request, then
 * SIGKILL after a deadline).
 */
import { fork, type ChildProcess as NodeChild } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { writeFile } from 'node:fs/promises';
import { Session } from 'node:inspector/promises';
import { writeHeapSnapshot } from 'node:v8';

interface Request {
  id: number;
  cmd: string;
  arg?: unknown;
}
type Reply = { id: number; ok: true; result: unknown } | { id: number; ok: false; error: string };
type ReadyMessage = { ready: unknown };

export type Handlers = Record<string, (arg: any) => unknown>;

/** Handlers every server process has: CPU time, memory after GC, CPU profile, heap snapshot. */
export function processHandlers(): Handlers {
  let profiler: Session | undefined;
  return {
    /** Microseconds of CPU (user + system) since the process started. */
    cpu: () => {
      const { user, system } = process.cpuUsage();
      return user + system;
    },
    /** Read and write system calls so far (Linux `/proc/self/io`; zeros elsewhere). */
    syscalls: () => {
      try {
        const io = readFileSync('/proc/self/io', 'utf8');
        const field = (name: string) => Number(new RegExp(`^${name}: (\\d+)$`, 'm').exec(io)?.[1] ?? 0);
        return { reads: field('syscr'), writes: field('syscw') };
      } catch {
        return { reads: 0, writes: 0 };
      }
    },
    /** `process.memoryUsage()` after two full collections (needs `--expose-gc`). */
    mem: () => {
      if (typeof globalThis.gc !== 'function') throw new Error('start the process with --expose-gc');
      globalThis.gc();
      globalThis.gc();
      return process.memoryUsage();
    },
    /** Starts the V8 sampling profiler: the same profile `node --cpu-prof` writes, over a window. */
    profileStart: async () => {
      profiler = new Session();
      profiler.connect();
      await profiler.post('Profiler.enable');
      await profiler.post('Profiler.start');
      return true;
    },
    /** Stops the profiler and writes the `.cpuprofile` to `path`. */
    profileStop: async (path: string) => {
      if (!profiler) throw new Error('profiler not started');
      const { profile } = await profiler.post('Profiler.stop');
      profiler.disconnect();
      profiler = undefined;
      await writeFile(path, JSON.stringify(profile));
      return path;
    },
    heapSnapshot: (path: string) => {
      globalThis.gc?.();
      return writeHeapSnapshot(path);
    },
  };
}

/** Answers the parent's requests; tells it `ready` with `info`. */
export function serveControl(handlers: Handlers, info: unknown): void {
  process.on('message', (message: Request) => {
    const handler = handlers[message.cmd];
    const reply = (r: Reply) => {
      // The parent may be gone already; then there is nobody to answer.
      if (process.connected) process.send!(r);
    };
    if (!handler) {
      reply({ id: message.id, ok: false, error: `unknown command ${message.cmd}` });
      return;
    }
    Promise.resolve()
      .then(() => handler(message.arg))
      .then(
        (result) => reply({ id: message.id, ok: true, result }),
        (err: unknown) => reply({ id: message.id, ok: false, error: String((err as Error)?.stack ?? err) }),
      );
  });
  // The bench is gone (killed, crashed): nobody will ever stop this process otherwise.
  process.on('disconnect', () => process.exit(0));
  process.send!({ ready: info } satisfies ReadyMessage);
}

/** The tsx ESM loader, as an absolute URL so children find it from any working directory. */
const TSX = import.meta.resolve('tsx');

export interface ForkOptions {
  args?: string[];
  /** Extra Node flags, e.g. `--expose-gc`. */
  nodeFlags?: string[];
  env?: NodeJS.ProcessEnv;
  /** How long to wait for `ready`. @default 20000 */
  readyTimeoutMs?: number;
}

export class ChildProcess<Ready = unknown> {
  readonly name: string;
  readonly process: NodeChild;
  readonly ready: Promise<Ready>;
  readonly exited: Promise<number | null>;
  #nextId = 1;
  #pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  #exitCode: number | null | undefined;

  constructor(name: string, entry: string, options: ForkOptions = {}) {
    this.name = name;
    this.process = fork(entry, options.args ?? [], {
      execArgv: ['--import', TSX, ...(options.nodeFlags ?? [])],
      env: options.env ?? process.env,
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
      serialization: 'advanced',
    });
    this.exited = new Promise((resolve) => {
      this.process.once('exit', (code, signal) => {
        this.#exitCode = code ?? (signal ? -1 : 0);
        for (const { reject } of this.#pending.values()) reject(new Error(`${name} exited (${code ?? signal})`));
        this.#pending.clear();
        resolve(this.#exitCode);
      });
    });
    const readyTimeoutMs = options.readyTimeoutMs ?? 20_000;
    this.ready = new Promise<Ready>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`${name} not ready in ${readyTimeoutMs} ms`)), readyTimeoutMs);
      this.process.on('message', (message: Reply | ReadyMessage) => {
        if ('ready' in message) {
          clearTimeout(timer);
          resolve(message.ready as Ready);
          return;
        }
        const waiter = this.#pending.get(message.id);
        if (!waiter) return;
        this.#pending.delete(message.id);
        if (message.ok) waiter.resolve(message.result);
        else waiter.reject(new Error(`${name}: ${message.error}`));
      });
      void this.exited.then((code) => {
        clearTimeout(timer);
        reject(new Error(`${name} exited with ${code} before it was ready`));
      });
    });
    // Callers that never wait for `ready` must not see an unhandled rejection.
    this.ready.catch(() => {});
  }

  get running(): boolean {
    return this.#exitCode === undefined;
  }

  request<T = unknown>(cmd: string, arg?: unknown, timeoutMs = 120_000): Promise<T> {
    if (!this.running || !this.process.connected) return Promise.reject(new Error(`${this.name} is not running`));
    const id = this.#nextId++;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.#pending.delete(id);
        reject(new Error(`${this.name}: ${cmd} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      this.#pending.set(id, {
        resolve: (v) => {
          clearTimeout(timer);
          resolve(v as T);
        },
        reject: (e) => {
          clearTimeout(timer);
          reject(e);
        },
      });
      this.process.send({ id, cmd, arg } satisfies Request);
    });
  }

  /** Asks the process to shut down, then kills it if it has not exited by the deadline. Idempotent. */
  async stop(deadlineMs = 8000): Promise<void> {
    if (!this.running) return;
    const killer = setTimeout(() => this.process.kill('SIGKILL'), deadlineMs);
    // A process that cannot answer any more is killed by the timer above.
    this.request('shutdown', undefined, deadlineMs).catch(() => {});
    await this.exited;
    clearTimeout(killer);
  }

  /** Kills at once (SIGKILL); for the SIGINT path. */
  kill(): void {
    if (this.running) this.process.kill('SIGKILL');
  }
}
