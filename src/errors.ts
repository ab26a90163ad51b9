/**
 * chatgate's own errors, with stable machine-readable codes. Errors from libraries (jose, NATS,
 * ws, the file system) are turned into these at the boundary; callers decide by `code`, never by
 * message text.
 */
export const ChatgateErrorCode = {
  /** A command-line option or environment variable is invalid (exit code 2). */
  badOption: 'bad_option',
  /** The nats-server binary is not installed. */
  natsServerMissing: 'nats_server_missing',
  /** nats-server started but did not become ready, or exited early. */
  natsServerFailed: 'nats_server_failed',
  /** The key files in CHATGATE_HOME cannot be read or written. */
  keys: 'keys',
  /** A NATS credential (role seed, creds file, TLS file) is missing, unreadable or too open. */
  natsCredentials: 'nats_credentials',
  /** NATS refused this process's credentials, or has none for an anonymous client. */
  natsAuthorization: 'nats_authorization',
  /** The NATS server has no JetStream, which revocations and durable delivery need. */
  noJetStream: 'no_jetstream',
  /** The revocations bucket does not exist (yet): an auth service makes it when it starts. */
  noRevocationBucket: 'no_revocation_bucket',
  /** The revocations bucket did not store a revocation (no acknowledgement, or a conflict). */
  revocationStore: 'revocation_store',
  /** A message stream did not acknowledge a message (no answer in time, an error answer, no JetStream). */
  messageStore: 'message_store',
} as const;

export type ChatgateErrorCodeValue = (typeof ChatgateErrorCode)[keyof typeof ChatgateErrorCode];

export class ChatgateError extends Error {
  readonly code: ChatgateErrorCodeValue;
  constructor(code: ChatgateErrorCodeValue, message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = 'ChatgateError';
    this.code = code;
  }
}

export const NATS_INSTALL_HINT =
  'nats-server not found: install it (Debian/Ubuntu: `sudo apt-get install nats-server`, ' +
  'macOS: `brew install nats-server`) or set NATS_SERVER_BIN; see docker-free-nats.md';
