/**
 * chatgate/client: the public API of the SDK, as explicit named exports. Browser-safe: nothing
 * here imports Node.
 */
export { connect, ChatClient } from './client.ts';
export type {
  ClientEvents,
  ClientOptions,
  ClientState,
  Gap,
  HistoryPage,
  HistoryTarget,
  Membership,
  Presence,
  Signal,
  StateChange,
  WebSocketConstructor,
  WebSocketLike,
} from './client.ts';
export { ClientError, ClientErrorCode, type ClientErrorCodeValue } from './errors.ts';
export type { SendResult } from './outbox.ts';
export {
  clientMachine,
  defaultClientMachineOptions,
  TERMINAL_CLOSE_CODES,
  TOKEN_CLOSE_CODES,
  type ClientMachineOptions,
} from '../../machines/client.machine.ts';
export type * from '../protocol.ts';
export { SUBPROTOCOL } from '../protocol.ts';
