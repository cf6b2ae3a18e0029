/**
 * ProtocolError: a peer sent bytes the replication protocol refuses (bad magic, version, type,
 * length, MAC, sequence, generation, epoch). It is a RangeError (bad input) with a stable `code`
 * that tests and logs can match on.
 */
export type ProtocolErrorCode =
  | 'BAD_MAGIC'
  | 'BAD_VERSION'
  | 'BAD_TYPE'
  | 'BAD_HEADER'
  | 'TOO_LARGE'
  | 'BAD_MAC'
  | 'REPLAY'
  | 'STALE_GENERATION'
  | 'STALE_EPOCH'
  | 'BAD_PAYLOAD'
  | 'AUTH_FAILED'
  | 'REJECTED'
  | 'TIMEOUT';

export class ProtocolError extends RangeError {
  constructor(readonly code: ProtocolErrorCode, message: string) {
    super(message);
    this.name = 'ProtocolError';
  }
}
