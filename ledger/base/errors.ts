/**
 * Errors with stable codes. Callers and tests branch on `code`; `message` is for people and may
 * change. Every code used anywhere in the project is listed here, so the catalogue in
 * docs/PROTOCOL.md and this union cannot drift apart unnoticed (a test compares them).
 */
export const ERROR_CODES = {
  // Encoding (strict, bounded decoding of anything hashed or signed)
  ERR_ENCODING_TOO_LARGE: 'input is larger than the limit for its type',
  ERR_ENCODING_MALFORMED: 'input is not well-formed CBOR',
  ERR_ENCODING_NONCANONICAL: 'input is CBOR but not in deterministic (RFC 8949 §4.2.1) form',
  ERR_ENCODING_TRAILING_BYTES: 'input has bytes after the first CBOR item',
  ERR_ENCODING_SCHEMA: 'input does not match the expected structure',
  ERR_ENCODING_VERSION: 'input has a version this implementation does not know',
  // Keys and signatures
  ERR_KEY_INVALID: 'a key has the wrong type or length',
  ERR_KEY_FILE_PERMISSIONS: 'a private key file is readable by group or others',
  ERR_KEY_FILE_FORMAT: 'a key file is not in the expected format',
  ERR_KEY_PASSPHRASE: 'the passphrase is wrong or the key file was altered',
  ERR_KEY_PASSPHRASE_REQUIRED: 'the key file is encrypted and no passphrase was given',
  ERR_ARGUMENT: 'an argument has the wrong type or value',
  ERR_SIGNATURE: 'a signature does not verify',
  // Chain structure
  ERR_CHECKPOINT_FORMAT: 'a checkpoint is not a well-formed signed note',
  ERR_CHECKPOINT_SIGNATURE: 'no trusted signature on a checkpoint verifies',
  ERR_CHECKPOINT_MISMATCH: 'a checkpoint does not match the chain it claims to describe',
  ERR_BLOCK_LINK: 'a block does not link to the hash of the block before it',
  ERR_BLOCK_INVALID: 'a block header is inconsistent with its entries',
  ERR_ENTRY_INVALID: 'an entry is not valid in its position of the chain',
  ERR_LOCK_SIGNATURE: 'a lock signature on an event does not verify',
  ERR_LOCK_UNKNOWN: 'an event names a lock that is not in the roster',
  ERR_ROSTER: 'a roster statement is not signed by a site key or is inconsistent',
  ERR_PROOF_INVALID: 'a Merkle proof does not verify',
  ERR_PROOF_RANGE: 'a proof was asked for positions outside the tree',
  ERR_RECEIPT_INVALID: 'a receipt does not verify',
  ERR_EQUIVOCATION: 'two signed checkpoints of one chain are not consistent',
  // Storage
  ERR_STORE_CLOSED: 'the store is not open',
  ERR_STORE_CORRUPT: 'stored data fails verification and could not be repaired',
  ERR_NOT_FOUND: 'no such item',
  ERR_CHAIN_READ_ONLY: 'the chain is not writable here',
  ERR_DISK_FULL: 'the disk holding the data folder is full (or over quota); writes wait for space',
  ERR_APPEND_ABORTED: 'the append was not made durable because the chain was closed or failed',
  // Lock protocol and drivers
  ERR_FRAME_CRC: 'the CRC-32 of a serial frame does not match its body',
  ERR_FRAME_TOO_LARGE: 'a frame or message is longer than the protocol allows',
  ERR_FRAME_MALFORMED: 'a frame is not valid COBS or is too short to hold a CRC; on MQTT, a packet that breaks the protocol (a remaining length over four bytes, a topic holding U+0000)',
  ERR_FRAGMENT: 'a BLE fragment is out of sequence or its lengths disagree',
  ERR_MESSAGE: 'a lock protocol message has an unknown type or wrong fields',
  ERR_REPLAY: 'a lock event repeats a counter with different content or goes backwards',
  ERR_OUT_OF_ORDER: 'a lock event arrived ahead of earlier events the lock still holds',
  ERR_BUSY: 'the gateway cannot take the event now; the lock keeps it and resends',
  ERR_DRIVER_UNAVAILABLE: 'a driver cannot run on this machine (no adapter, no device, missing support)',
  ERR_DRIVER_STOPPED: 'the driver was stopped or its link to the lock went away',
  // Gateway runtime
  ERR_CONFIG: 'the configuration has a wrong or unknown key',
  // MQTT broker and network
  ERR_PORT_IN_USE: 'a network port is already in use',
  ERR_MQTT_AUTH: 'an MQTT client gave no credentials or wrong ones',
  ERR_MQTT_ACL: 'an MQTT client published or subscribed outside what its role allows',
  ERR_MQTT_RATE: 'an MQTT client published faster than its rate limit',
  ERR_MQTT_USERS_FILE: 'the MQTT users file is malformed or readable by group or others',
  ERR_MQTT_SESSIONS: 'an MQTT principal holds as many persistent sessions as it may, all connected',
  ERR_MQTT_RETAINED: 'an MQTT client went over its cap on retained messages (count or bytes)',
  ERR_MQTT_LOGIN_RATE: 'too many failed MQTT logins from one address, or from all, in the last minute',
  ERR_MQTT_BUSY: 'the broker is checking as many MQTT passwords as it may queue; try again',
  // Local API
  ERR_UNAUTHORIZED: 'a request to the local API lacks a valid bearer token',
  ERR_METHOD_NOT_ALLOWED: 'the local API does not allow this HTTP method',
  ERR_INTERNAL: 'an unexpected failure inside the gateway',
  ERR_TOO_MANY_CONNECTIONS: 'the local API or the MQTT broker already has as many open connections as its caps allow (in all, or from this address)',
  // Provisioning CLI and installation
  ERR_USAGE: 'a command line has an unknown option, a missing argument or a wrong value',
  ERR_CANCELLED: 'the person at the terminal declined a confirmation',
  ERR_BUNDLE: 'a provisioning bundle is malformed or does not enrol the key it carries',
  ERR_BUNDLE_EXPIRED: 'the enrolment in a provisioning bundle has expired',
  ERR_GATEWAY_UNREACHABLE: 'the gateway’s local API cannot be reached',
  ERR_API: 'the gateway’s local API answered with an error',
  ERR_STORE_LOCKED: 'the ledger database is open in another process (a running gateway)',
  ERR_BACKUP: 'a backup file is malformed, or its passphrase is wrong',
  // Peer discovery (mDNS announcements)
  ERR_DISCOVERY_ANNOUNCEMENT: 'an mDNS announcement has missing, oversized or malformed TXT fields',
  ERR_DISCOVERY_SITE: 'an mDNS announcement is for another site',
  ERR_DISCOVERY_STALE: 'an mDNS announcement carries a timestamp too far from now',
  ERR_DISCOVERY_SIGNATURE: 'an mDNS announcement signature does not verify with the key it advertises',
  ERR_DISCOVERY_ENROLMENT: 'an mDNS announcement enrolment is not a site-signed statement enrolling that gateway and key',
  ERR_DISCOVERY_REVOKED: 'an mDNS announcement comes from a revoked or superseded gateway key',
  // Sync between gateways
  ERR_SYNC_STALE: 'a peer announced a checkpoint older than the one already verified (a replay)',
  // Privacy (docs/PRIVACY.md)
  ERR_PRIVACY_OPEN: 'a sealed or encrypted item does not open: unknown key, wrong key, or altered bytes',
  ERR_PRIVACY_CLEAR_CREDENTIAL: 'a lock event carries a credential reference that is not sealed to the site privacy key',
  ERR_PRIVACY_ERASED: 'the person’s data key was destroyed (crypto-shredded); their fields cannot be read',
  // Identity and ledger recovery (docs/SYNC.md §Recovery)
  ERR_IDENTITY_INCOMPLETE: 'the data folder holds part of a gateway identity: a file of it is missing',
  ERR_LEDGER_LOST: 'the ledger is missing or shorter than the last checkpoint this gateway signed; nothing is appended until it is recovered or an operator accepts the loss',
  ERR_PRIVACY_NO_KEY: 'this gateway holds no key for the person (not erased): only the gateway that recorded the person holds it',
  // Lock protocol refusals (docs/PROTOCOL.md §Flow)
  ERR_EVENT_INVALID: 'a lock event message carries a payload that is not a valid lock event; it can never be accepted',
  ERR_LOCK_REVOKED: 'the lock’s enrolment was revoked; nothing from it will be accepted again',
  ERR_LOCK_KEY: 'the lock announced a key other than its enrolled one; it must be enrolled again with the new key',
  ERR_WINDOW: 'a lock had more events unanswered than the window of the gateway’s hello allows',
  ERR_PROTOCOL_VERSION: 'a lock announced a lock protocol version the gateway does not speak',
  ERR_LINK_SHARED: 'a second lock spoke on a serial line; serial lines are point-to-point',
  // Notifications to an external MQTT broker (docs/MQTT.md §External broker)
  ERR_MQTT_BACKLOG: 'notifications waiting for the external MQTT broker reached notifications.externalBroker.maxPending; new ones are dropped',
  ERR_NODE_VERSION: 'the installed release found no Node.js 20 or later to run on (bin/oti-node, docs/INSTALL.md)',
  ERR_ROSTER_COMMITMENT: 'roster statements do not match the roster a checkpoint commits to (a statement such as a revocation left out, added or changed)',
  // The fleet archive (docs/ARCHIVE.md)
  ERR_DATABASE_UNAVAILABLE: 'the archive cannot reach its MySQL/MariaDB database now; try again later',
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class OtiError extends Error {
  readonly code: ErrorCode;
  /** Structured details for logs and evidence; never contains key material. */
  readonly details: Record<string, unknown> | undefined;

  constructor(code: ErrorCode, message?: string, details?: Record<string, unknown>, options?: { cause?: unknown }) {
    super(message ?? ERROR_CODES[code], options);
    this.name = 'OtiError';
    this.code = code;
    this.details = details;
  }
}

export function isOtiError(e: unknown, code?: ErrorCode): e is OtiError {
  return e instanceof OtiError && (code === undefined || e.code === code);
}
