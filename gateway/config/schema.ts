/**
 * The gateway's configuration schema: one declarative object that drives validation
 * (gateway/config/config.ts), defaults, the environment-variable names, the `GatewayConfig` type and
 * the key table of docs/CONFIGURATION.md (test/support/make-config-doc.ts). Adding a key here
 * is the whole change: the loader, the type and the documentation follow from it.
 *
 * Field kinds: `int`, `number` (the only non-integer), `bool`, `enum`, `string` (with a format:
 * free text, host name or address, http(s) URL), `path` (resolved to an absolute path against
 * the folder of the file that set it, or the working folder for defaults, environment and
 * flags), `section` (nested keys) and `list` (an array of objects, set in the file; a list may
 * also have a compact string form for the environment and flags). A leaf with a `default` is
 * always set; one without is `undefined` unless given (or, inside a list item, `required`).
 */
import { DEFAULT_QUEUE_LIMIT } from '../ingest.js';
import { DEFAULT_MAX_CONNECTIONS, DEFAULT_MAX_CONNECTIONS_PER_ADDRESS } from '../api/api-connection-cap.js';
import { DEFAULT_LOGIN_LIMITS, DEFAULT_MQTT_CONNECTION_CAPS, DEFAULT_RETAINED_CAPS, DEFAULT_SESSION_CAPS } from '../broker/limits.js';

interface FieldBase {
  readonly doc: string;
  /** Inside a list item: the key must be given. */
  readonly required?: boolean;
  /** The value is a secret: errors never echo it. */
  readonly secret?: boolean;
}
export interface IntField extends FieldBase {
  readonly kind: 'int';
  readonly min: number;
  readonly max: number;
  /** When set, only these values are allowed (within min..max). */
  readonly values?: readonly number[];
  readonly default?: number;
}
export interface NumberField extends FieldBase {
  readonly kind: 'number';
  readonly min: number;
  readonly max: number;
  readonly default?: number;
}
export interface BoolField extends FieldBase {
  readonly kind: 'bool';
  readonly default: boolean;
}
export interface EnumField<V extends string = string> extends FieldBase {
  readonly kind: 'enum';
  readonly values: readonly V[];
  readonly default?: V;
}
export interface StringField extends FieldBase {
  readonly kind: 'string';
  /** `text`: any characters but control characters; `host`: a DNS name or IP address; `url`: an http or https URL. */
  readonly format: 'text' | 'host' | 'url';
  readonly minLength: number;
  readonly maxLength: number;
  readonly default?: string;
}
export interface PathField extends FieldBase {
  readonly kind: 'path';
  /** Relative to the working folder; `<dataDir>` stands for the resolved `dataDir`. */
  readonly default?: string;
}
export type LeafField = IntField | NumberField | BoolField | EnumField | StringField | PathField;

export interface ItemSchema {
  /** Name of the item type in the documentation, e.g. `SerialPort`. */
  readonly name: string;
  readonly fields: Readonly<Record<string, LeafField>>;
  /** Pairs of keys of which exactly one must be given. */
  readonly exactlyOne?: readonly (readonly [string, string])[];
  /** Pairs [low, high] of number keys where low ≤ high must hold. */
  readonly ordered?: readonly (readonly [string, string])[];
}
export interface ListField {
  readonly kind: 'list';
  readonly doc: string;
  readonly item: ItemSchema;
  readonly maxItems: number;
  /** A compact string form for the environment and flags; without it the list is file-only. */
  readonly stringForm?: {
    readonly syntax: string;
    /** Splits the string into raw items (string values), which are then validated like file items. */
    readonly split: (s: string) => readonly Readonly<Record<string, string>>[] | undefined;
  };
}
export interface Section {
  readonly kind: 'section';
  readonly fields: Readonly<Record<string, Field>>;
}
export type Field = LeafField | ListField | Section;

// Constructors keep each literal's exact type, so the config type can be inferred below.
const int = <const F extends Omit<IntField, 'kind'>>(f: F): F & { readonly kind: 'int' } => ({ kind: 'int', ...f });
const num = <const F extends Omit<NumberField, 'kind'>>(f: F): F & { readonly kind: 'number' } => ({ kind: 'number', ...f });
const bool = <const F extends Omit<BoolField, 'kind'>>(f: F): F & { readonly kind: 'bool' } => ({ kind: 'bool', ...f });
const oneOf = <const V extends string, const F extends Omit<EnumField<V>, 'kind' | 'values'>>(values: readonly V[], f: F): F & { readonly kind: 'enum'; readonly values: readonly V[] } => ({
  kind: 'enum',
  values,
  ...f,
});
const str = <const F extends Omit<StringField, 'kind'>>(f: F): F & { readonly kind: 'string' } => ({ kind: 'string', ...f });
const path = <const F extends Omit<PathField, 'kind'>>(f: F): F & { readonly kind: 'path' } => ({ kind: 'path', ...f });
const list = <const F extends Omit<ListField, 'kind'>>(f: F): F & { readonly kind: 'list' } => ({ kind: 'list', ...f });
const section = <const F extends Readonly<Record<string, Field>>>(fields: F): { readonly kind: 'section'; readonly fields: F } => ({ kind: 'section', fields });

const port = (dflt: number, doc: string) => int({ min: 0, max: 65535, default: dflt, doc });
const host = (dflt: string, doc: string) => str({ format: 'host', minLength: 1, maxLength: 253, default: dflt, doc });
/** Standard serial line rates (termios B1200..B921600). */
export const BAUD_RATES = [1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600] as const;
/** `demo.locks` when `--demo` is given without a number. */
export const DEMO_FLAG_LOCKS = 3;
/** A token or webhook secret: at least 128 bits when random characters. */
const SECRET_MIN = 16;

/** `path[:baud],...`, e.g. `/dev/ttyUSB0:57600,/dev/ttyUSB1`. A trailing `:digits` is the rate. */
function splitSerialPorts(s: string): Record<string, string>[] | undefined {
  const items: Record<string, string>[] = [];
  for (const part of s.split(',')) {
    const m = /^(.+?)(?::(\d+))?$/.exec(part.trim());
    if (m === null) return undefined;
    const [, p, baud] = m;
    if (p === undefined) return undefined;
    items.push(baud === undefined ? { path: p } : { path: p, baudRate: baud });
  }
  return items;
}

export const SCHEMA = section({
  dataDir: path({ default: './data', doc: 'Folder of the gateway identity, ledger and state. Created (mode 0700) when missing.' }),
  log: section({
    level: oneOf(['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'], { default: 'info', doc: 'Least severe log level written.' }),
  }),
  broker: section({
    host: host('0.0.0.0', 'Address the embedded MQTT broker listens on.'),
    port: port(1883, 'MQTT port of the embedded broker; 0 picks a free port (for tests).'),
    allowAnonymous: bool({ default: false, doc: 'Let clients connect without credentials (read-only role). Off unless turned on.' }),
    maxMessageBytes: int({ min: 1024, max: 268435455, default: 262144, doc: 'Largest MQTT packet the broker accepts (the protocol maximum is 268435455).' }),
    maxConnections: int({ min: 1, max: 65_536, default: DEFAULT_MQTT_CONNECTION_CAPS.total, doc: 'Open MQTT connections in all (both listeners, logged in or not yet; the gateway\'s own host not counted); one more is closed unread after broker.login.refusalDelayMs (at once on the TLS listener).' }),
    maxConnectionsPerAddress: int({ min: 1, max: 65_536, default: DEFAULT_MQTT_CONNECTION_CAPS.perAddress, doc: 'Open MQTT connections from one remote address, so one host cannot take every slot; one more is refused as for broker.maxConnections.' }),
    rateLimit: section({
      messagesPerSecond: int({ min: 1, max: 1_000_000, default: 500, doc: 'Sustained messages per second a client may publish.' }),
      burst: int({ min: 1, max: 1_000_000, default: 1000, doc: 'Messages a client may publish at once above the sustained rate.' }),
    }),
    tls: section({
      port: port(8883, 'MQTT over TLS port; used only when TLS is on.'),
      cert: path({ doc: 'PEM certificate chain. TLS is on when cert and key are both set.' }),
      key: path({ doc: 'PEM private key of the certificate. Must be set together with cert.' }),
      ca: path({ doc: 'PEM CA bundle to verify client certificates; needs cert and key.' }),
    }),
    usersFile: path({ default: '<dataDir>/mqtt-users.json', doc: 'Users of the embedded broker and their roles: apps, read-only clients, Home Assistant, fleet archives (docs/MQTT.md §The users file).' }),
    sessions: section({
      maxPerPrincipal: int({ min: 1, max: 1000, default: DEFAULT_SESSION_CAPS.maxPerPrincipal, doc: 'Persistent sessions (clean session off) one user or gateway may hold; a new one discards its longest-offline one, or is refused (CONNACK 3) when all are connected.' }),
      expiryS: int({ min: 1, max: 31_536_000, default: DEFAULT_SESSION_CAPS.expiryS, doc: 'Seconds an offline persistent session is kept before it is discarded with its queue.' }),
      maxQueuedMessages: int({ min: 1, max: 1_000_000, default: DEFAULT_SESSION_CAPS.maxQueuedMessages, doc: 'Messages queued for one persistent session; the oldest are dropped (and counted) beyond.' }),
      maxQueuedBytes: int({ min: 1024, max: 1_073_741_824, default: DEFAULT_SESSION_CAPS.maxQueuedBytes, doc: 'Bytes (payload and topic) queued for one persistent session; the oldest are dropped beyond.' }),
    }),
    retained: section({
      maxPerPrincipal: int({ min: 1, max: 100_000, default: DEFAULT_RETAINED_CAPS.maxPerPrincipal, doc: 'Retained messages one client principal (a peer gateway) may hold on the broker; one more is refused (ERR_MQTT_RETAINED) and closes its connection.' }),
      maxBytesPerPrincipal: int({ min: 1024, max: 1_073_741_824, default: DEFAULT_RETAINED_CAPS.maxBytesPerPrincipal, doc: 'Payload bytes of the retained messages one client principal may hold; over it the publish is refused (ERR_MQTT_RETAINED).' }),
    }),
    login: section({
      maxConcurrentChecks: int({ min: 1, max: 64, default: DEFAULT_LOGIN_LIMITS.maxConcurrentChecks, doc: 'MQTT credential checks (scrypt on the libuv threadpool, which LevelDB shares) running at once.' }),
      maxPendingChecks: int({ min: 0, max: 10_000, default: DEFAULT_LOGIN_LIMITS.maxPendingChecks, doc: 'MQTT logins waiting for a credential check; one more is refused with CONNACK 3 (ERR_MQTT_BUSY).' }),
      failuresPerMinutePerAddress: int({ min: 1, max: 1_000_000, default: DEFAULT_LOGIN_LIMITS.failuresPerMinutePerAddress, doc: 'Failed MQTT logins per minute (and burst) from one source address; beyond, its logins are refused unchecked with CONNACK 5 (ERR_MQTT_LOGIN_RATE).' }),
      failuresPerMinute: int({ min: 1, max: 1_000_000, default: DEFAULT_LOGIN_LIMITS.failuresPerMinute, doc: 'Failed MQTT logins per minute (and burst) from all addresses; beyond, logins are refused unchecked with CONNACK 3 (ERR_MQTT_LOGIN_RATE).' }),
      trackedAddresses: int({ min: 1, max: 1_000_000, default: DEFAULT_LOGIN_LIMITS.trackedAddresses, doc: 'Source addresses whose failed logins are remembered; the least recently seen is forgotten first.' }),
      refusalDelayMs: int({ min: 0, max: 5000, default: DEFAULT_LOGIN_LIMITS.refusalDelayMs, doc: 'Milliseconds (0.5 to 1.5 times, at random) a refused MQTT login waits for its CONNACK (3, 4 or 5), and a connection over broker.maxConnections or broker.maxConnectionsPerAddress waits unread before it is closed, so that a client retrying at once retries about once per delay; 0 answers and closes at once.' }),
    }),
  }),
  api: section({
    host: host('127.0.0.1', 'Address of the local HTTP API. Any non-loopback address needs api.token.'),
    port: port(8433, 'Port of the local HTTP API; 0 picks a free port.'),
    token: str({ format: 'text', minLength: SECRET_MIN, maxLength: 4096, secret: true, doc: 'Bearer token for the API; required when api.host is not a loopback address.' }),
    privacyToken: str({ format: 'text', minLength: SECRET_MIN, maxLength: 4096, secret: true, doc: 'Bearer token of privacy officers (docs/PRIVACY.md): the only token that reaches /privacy/ and, with the privacy keyring in the data folder, sees plaintext. Must differ from api.token. Refused when api.host is not a loopback address (the API has no TLS).' }),
    maxConnections: int({ min: 1, max: 4096, default: DEFAULT_MAX_CONNECTIONS, doc: 'Open connections to the API in all; more are answered 503 ERR_TOO_MANY_CONNECTIONS and closed.' }),
    maxConnectionsPerAddress: int({ min: 1, max: 4096, default: DEFAULT_MAX_CONNECTIONS_PER_ADDRESS, doc: 'Open connections to the API from one remote address, so one client cannot take every slot; more are answered 503 ERR_TOO_MANY_CONNECTIONS and closed.' }),
  }),
  ingest: section({
    queueLimit: int({ min: 1, max: 1_048_576, default: DEFAULT_QUEUE_LIMIT, doc: 'Events waiting for the ledger before acknowledgements wait (locks keep their events meanwhile).' }),
    window: int({ min: 1, max: 64, default: 8, doc: 'Events one lock may have in flight (not yet acknowledged).' }),
    sealDelayMs: int({ min: 0, max: 1000, default: 5, doc: 'Longest a block waits for more events before it is sealed.' }),
    maxBlockEntries: int({ min: 1, max: 65536, default: 1024, doc: 'Most entries in one block (one signature, one durable write).' }),
  }),
  serial: section({
    ports: list({
      doc: 'Serial (RS-485/UART) lines, one lock on each (point to point, 8N1, no flow control: docs/PROTOCOL.md §Serial line).',
      maxItems: 64,
      item: {
        name: 'SerialPort',
        fields: {
          path: str({ format: 'text', minLength: 1, maxLength: 4096, required: true, doc: 'Device, e.g. /dev/ttyUSB0 (not resolved: a device name).' }),
          baudRate: int({ min: 1200, max: 921600, values: BAUD_RATES, default: 115200, doc: 'Line rate.' }),
          maxFrameBytes: int({ min: 64, max: 65536, default: 4352, doc: 'Longest frame accepted before it is dropped as too large.' }),
          reconnectMinMs: int({ min: 10, max: 60_000, default: 250, doc: 'First wait before reopening a port that went away.' }),
          reconnectMaxMs: int({ min: 10, max: 3_600_000, default: 10_000, doc: 'Longest wait between reopen attempts (the wait doubles up to it).' }),
        },
        ordered: [['reconnectMinMs', 'reconnectMaxMs']],
      },
      stringForm: { syntax: 'path[:baud],...', split: splitSerialPorts },
    }),
  }),
  ble: section({
    enabled: bool({ default: true, doc: 'Use Bluetooth LE when an adapter is present (reported unavailable otherwise).' }),
    maxConnections: int({ min: 1, max: 16, default: 4, doc: 'Locks connected at the same time.' }),
    scanWatchdogMs: int({ min: 1000, max: 600_000, default: 30_000, doc: 'Restart scanning after this long without an advertisement.' }),
    adapter: int({ min: 0, max: 15, doc: 'HCI adapter index (hciN); the system default when unset.' }),
  }),
  notifications: section({
    mqtt: section({
      enabled: bool({ default: true, doc: 'Publish events and per-event status on the broker.' }),
    }),
    statusRetentionS: int({ min: 1, max: 31_536_000, default: 86_400, doc: 'How long a retained per-event status stays on the broker.' }),
    statusRetainMax: int({ min: 10, max: 1_000_000, default: 1000, doc: 'Most retained per-event statuses kept on the broker; the oldest are cleared first (older events: local API). Also how many are rebuilt from the ledger at start.' }),
    homeAssistant: section({
      enabled: bool({ default: false, doc: 'Publish Home Assistant MQTT discovery so locks appear as entities.' }),
      prefix: str({ format: 'text', minLength: 1, maxLength: 128, default: 'homeassistant', doc: 'Home Assistant discovery topic prefix.' }),
    }),
    externalBroker: section({
      url: str({ format: 'text', minLength: 1, maxLength: 2048, doc: 'mqtt:// or mqtts:// URL of an external broker (Mosquitto, EMQX) that gets the notifications too (mode beside) or alone (mode instead); off when unset.' }),
      mode: oneOf(['beside', 'instead'], { default: 'beside', doc: 'beside: notifications go to the embedded broker and the external one; instead: only to the external one (the embedded broker still serves sync).' }),
      username: str({ format: 'text', minLength: 1, maxLength: 256, doc: 'User name on the external broker.' }),
      passwordFile: path({ doc: 'File whose first line is the password on the external broker (0600).' }),
      clientId: str({ format: 'text', minLength: 1, maxLength: 128, doc: 'MQTT client id on the external broker (default oti-<site>-<gateway>).' }),
      ca: path({ doc: 'PEM CA bundle that verifies the external broker’s certificate (mqtts://; the system CAs otherwise).' }),
      cert: path({ doc: 'PEM client certificate, for brokers that authenticate clients by certificate; needs key.' }),
      key: path({ doc: 'PEM private key of the client certificate; needs cert.' }),
      maxPending: int({ min: 1, max: 100_000, default: 1000, doc: 'Notifications handed to the external broker and not yet acknowledged at most (held in memory while it is unreachable); beyond, new ones are refused with ERR_MQTT_BACKLOG and counted (docs/MQTT.md §External broker).' }),
    }),
  }),
  webhooks: list({
    doc: 'HTTP endpoints that receive every event (signed, retried, at least once).',
    maxItems: 64,
    item: {
      name: 'Webhook',
      fields: {
        url: str({ format: 'url', minLength: 1, maxLength: 2048, required: true, doc: 'http or https URL that receives POSTs.' }),
        secret: str({ format: 'text', minLength: SECRET_MIN, maxLength: 4096, secret: true, doc: 'HMAC key for the signature header; give secret or secretFile.' }),
        secretFile: path({ doc: 'File holding the HMAC key; give secret or secretFile.' }),
        maxAttempts: int({ min: 0, max: 1_000_000, default: 0, doc: 'Deliveries tried per event; 0 tries forever.' }),
        backoffMinMs: int({ min: 100, max: 3_600_000, default: 1000, doc: 'First wait before a retry.' }),
        backoffMaxMs: int({ min: 100, max: 86_400_000, default: 300_000, doc: 'Longest wait between retries.' }),
        timeoutMs: int({ min: 100, max: 300_000, default: 10_000, doc: 'Time allowed for one delivery.' }),
      },
      exactlyOne: [['secret', 'secretFile']],
      ordered: [['backoffMinMs', 'backoffMaxMs']],
    },
  }),
  provisioning: section({
    bundle: path({ default: '/boot/oti-bundle.json', doc: 'Provisioning bundle from `oti gateway enroll`, applied on the first start (no identity yet) and renamed to *.applied.' }),
  }),
  discovery: section({
    enabled: bool({ default: true, doc: 'Announce and find the site\'s gateways with mDNS (_oti._tcp).' }),
    backend: oneOf(['js', 'avahi'], { default: 'js', doc: 'mDNS implementation: built-in (js) or the system\'s Avahi daemon.' }),
    staticPeers: list({
      doc: 'Peers to connect to without mDNS (networks that block multicast).',
      maxItems: 256,
      item: {
        name: 'StaticPeer',
        fields: {
          host: str({ format: 'host', minLength: 1, maxLength: 253, required: true, doc: 'Peer gateway host name or address.' }),
          port: int({ min: 1, max: 65535, default: 1883, doc: 'Peer broker port.' }),
        },
      },
    }),
  }),
  sync: section({
    quorum: int({ min: 1, max: 1000, doc: 'Gateways whose cosignatures confirm an event; a majority of the site\'s gateways when unset.' }),
    recoverWaitMs: int({ min: 0, max: 60_000, default: 3000, doc: 'At start, how long to wait for discovery to find a peer to check this gateway\'s own chain with (0: only static peers). A ledger behind the last checkpoint this gateway signed waits for peers without limit (docs/SYNC.md §Recovery of the own chain).' }),
    recoverTimeoutMs: int({ min: 1000, max: 600_000, default: 15_000, doc: 'At start, how long recovering this gateway\'s own chain from peers may take.' }),
    lockSignatures: oneOf(['audit', 'before-storing'] as const, {
      default: 'audit',
      doc: 'When the lock signatures in peer chains are checked: after storing, by a background audit that must pass before a checkpoint is cosigned (audit), or before storing (before-storing, a catch-up then runs at the speed of Ed25519). Every other check comes before storing either way.',
    }),
  }),
  demo: section({
    locks: int({ min: 0, max: 1000, default: 0, doc: `Simulated locks on ptys (\`--demo\` alone means ${DEMO_FLAG_LOCKS}).` }),
    rate: num({ min: 0.01, max: 10_000, default: 2, doc: 'Events per second per simulated lock.' }),
  }),
  witness: section({
    http: section({
      enabled: bool({ default: false, doc: 'Serve C2SP tlog-witness POST /add-checkpoint on a listener of its own, so the site\'s gateways and standard log clients get this gateway\'s cosignature of the site chains it replicates (docs/SYNC.md §Witnessing over HTTP).' }),
      host: host('0.0.0.0', 'Address of the add-checkpoint listener (it has no token: the checkpoint signature is its only authentication, as the spec says).'),
      port: port(8434, 'Port of the add-checkpoint listener; 0 picks a free port.'),
      maxConnections: int({ min: 1, max: 4096, default: 64, doc: 'Open connections to the add-checkpoint listener; more are refused. Each request body is at most 6,964 bytes (the spec\'s 63 proof lines and a 4,096-byte note) and requests are answered one at a time.' }),
    }),
    external: list({
      doc: 'External C2SP tlog-witnesses this gateway pushes its checkpoints to (POST <url>/add-checkpoint); their cosignatures count toward confirmation (witness.externalQuorum). docs/SYNC.md §External witnesses.',
      maxItems: 16,
      item: {
        name: 'ExternalWitness',
        fields: {
          url: str({ format: 'url', minLength: 1, maxLength: 2048, required: true, doc: 'The witness\'s submission prefix (http or https); add-checkpoint is POSTed to <url>/add-checkpoint.' }),
          name: str({ format: 'text', minLength: 1, maxLength: 255, required: true, doc: 'The witness\'s key name, as in its cosignature lines.' }),
          key: str({ format: 'text', minLength: 64, maxLength: 64, required: true, doc: 'The witness\'s Ed25519 public key, 64 hex digits.' }),
        },
      },
    }),
    externalQuorum: int({ min: 0, max: 16, default: 0, doc: 'k of the k-of-n policy: an event is confirmed only once k of witness.external have cosigned a checkpoint covering it, besides the sync.quorum of the site\'s gateways (0: external cosignatures are collected but not required).' }),
    pushTimeoutMs: int({ min: 100, max: 120_000, default: 10_000, doc: 'Time one add-checkpoint request to an external witness may take; one request per witness is in flight, a failed one is retried with the next block.' }),
  }),
  uplink: section({
    url: str({ format: 'text', minLength: 1, maxLength: 2048, doc: 'mqtt:// or mqtts:// URL of the central broker that gets this gateway\'s own chain for the fleet archive (docs/ARCHIVE.md); off when unset.' }),
    username: str({ format: 'text', minLength: 1, maxLength: 256, doc: 'User name on the central broker.' }),
    passwordFile: path({ doc: 'File whose first line is the password on the central broker (0600).' }),
    clientId: str({ format: 'text', minLength: 1, maxLength: 128, doc: 'MQTT client id on the central broker (default oti-uplink-<site>-<gateway>).' }),
    ca: path({ doc: 'PEM CA bundle that verifies the central broker’s certificate (mqtts://; the system CAs otherwise).' }),
    cert: path({ doc: 'PEM client certificate for the central broker; needs key.' }),
    key: path({ doc: 'PEM private key of the client certificate; needs cert.' }),
    topicPrefix: str({ format: 'text', minLength: 1, maxLength: 128, default: 'oti-fleet', doc: 'Topic prefix on the central broker: blocks go to <prefix>/<site>/<gateway>/block.' }),
    window: int({ min: 1, max: 1024, default: 16, doc: 'Blocks published and not yet acknowledged by the central broker at most; the rest wait in the ledger.' }),
  }),
});

// ---- The configuration type, inferred from SCHEMA ----

type LeafValue<F> = F extends { kind: 'int' | 'number' } ? number : F extends { kind: 'bool' } ? boolean : F extends { kind: 'enum'; values: readonly (infer V)[] } ? V : string;
type Leaf<F> = F extends { default: unknown } ? LeafValue<F> : F extends { required: true } ? LeafValue<F> : LeafValue<F> | undefined;
type Item<I> = I extends { fields: infer Fs } ? { readonly [K in keyof Fs]: Leaf<Fs[K]> } : never;
export type ValueOf<F> = F extends { kind: 'section'; fields: infer Fs }
  ? { readonly [K in keyof Fs]: ValueOf<Fs[K]> }
  : F extends { kind: 'list'; item: infer I }
    ? readonly Item<I>[]
    : Leaf<F>;

// ---- The flat key list (documentation and environment names) ----

/** `broker.rateLimit.messagesPerSecond` → `OTI_BROKER_RATE_LIMIT_MESSAGES_PER_SECOND`. */
export function envName(key: string): string {
  return `OTI_${key.replace(/([a-z0-9])([A-Z])/g, '$1_$2').replace(/\./g, '_').toUpperCase()}`;
}

/** What a leaf accepts, in words; used in error messages and in the documentation. */
export function describe(f: LeafField): string {
  switch (f.kind) {
    case 'int':
      return f.values !== undefined ? `one of ${f.values.join(', ')}` : `an integer ${f.min}..${f.max}`;
    case 'number':
      return `a number ${f.min}..${f.max}`;
    case 'bool':
      return 'true or false';
    case 'enum':
      return `one of ${f.values.join(', ')}`;
    case 'string':
      if (f.format === 'host') return 'a host name or IP address';
      if (f.format === 'url') return 'an http or https URL without a user name or password';
      return f.minLength > 1 ? `a string of ${f.minLength}..${f.maxLength} characters` : `a non-empty string of at most ${f.maxLength} characters`;
    case 'path':
      return 'a file or folder path';
  }
}

export interface ConfigKey {
  /** Dotted path; list item keys are written `list[].key`. */
  readonly key: string;
  readonly type: string;
  readonly default: unknown;
  readonly doc: string;
  /** Environment variable, or '' when the key can only be set in the file. */
  readonly env: string;
}

function flatten(fields: Readonly<Record<string, Field>>, prefix: string, out: ConfigKey[]): void {
  for (const [name, f] of Object.entries(fields)) {
    const key = prefix + name;
    if (f.kind === 'section') {
      flatten(f.fields, `${key}.`, out);
    } else if (f.kind === 'list') {
      const type = f.stringForm !== undefined ? `list of ${f.item.name} (or "${f.stringForm.syntax}")` : `list of ${f.item.name}`;
      out.push({ key, type, default: [], doc: f.doc, env: f.stringForm !== undefined ? envName(key) : '' });
      for (const [itemKey, leaf] of Object.entries(f.item.fields)) {
        out.push({ key: `${key}[].${itemKey}`, type: describe(leaf) + (leaf.required === true ? ', required' : ''), default: leaf.default, doc: leaf.doc, env: '' });
      }
    } else {
      out.push({ key, type: describe(f), default: f.default, doc: f.doc, env: envName(key) });
    }
  }
}

/** Every key of the schema, in schema order (docs/CONFIGURATION.md lists exactly these). */
export const CONFIG_KEYS: readonly ConfigKey[] = (() => {
  const out: ConfigKey[] = [];
  flatten(SCHEMA.fields, '', out);
  return Object.freeze(out.map((k) => Object.freeze(k)));
})();
