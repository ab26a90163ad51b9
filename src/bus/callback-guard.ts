/**
 * The one way chatgate hands NATS messages to its code: a subscription callback that never
 * throws. nats.js calls a subscription's callback from the connection's reader; a throw there
 * ends the subscription, and with it every later message on it (a node that delivers nothing, an
 * auth service that answers nothing). So: a subscription error (`err`, a permissions violation
 * for example) and anything the handler throws or rejects with is one bounded log line
 * (src/bounded-log.ts), and the next message is handled as usual.
 *
 *   nc.subscribe(subject, { callback: guard.callback('revoked', (msg) => { ... }) });
 */
import type { Msg, MsgCallback } from '@nats-io/nats-core';
import { errorSummary, limitedLog, type LimitedLog, type LogBudgetOptions } from '../bounded-log.ts';
import type { Logger } from '../log.ts';

export class CallbackGuard {
  readonly #report: LimitedLog;

  /** One log budget for every callback made here: a storm on many subjects is bounded too. */
  constructor(log: Logger, budget?: LogBudgetOptions) {
    this.#report = limitedLog(log, budget);
  }

  /** A subscription callback for `handle`; `name` says which subscription in the log line. */
  callback(name: string, handle: (msg: Msg) => void | Promise<unknown>): MsgCallback<Msg> {
    return (err, msg) => {
      if (err) {
        this.#report('error', { subscription: name, error: errorSummary(err) }, 'nats subscription error');
        return;
      }
      try {
        const done = handle(msg);
        if (done instanceof Promise) done.catch((failure: unknown) => this.#failed(name, failure));
      } catch (failure) {
        this.#failed(name, failure);
      }
    };
  }

  #failed(name: string, failure: unknown): void {
    this.#report('error', { subscription: name, error: errorSummary(failure) }, 'nats message not handled');
  }
}
