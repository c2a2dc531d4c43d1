/**
 * The MQTT topic map: every topic the gateway uses, the payload type it carries, and which role
 * may publish or subscribe where. docs/MQTT.md is the human-readable form of this file; a unit
 * test checks that every pattern of TOPIC_TABLE appears there.
 *
 * All topics live under the site prefix `oti/<site>/`, except Home Assistant discovery, which
 * lives under Home Assistant's discovery prefix (default `homeassistant`). Every site, gateway
 * and lock segment matches ID_PATTERN (ledger/schema.ts), so no segment can hold `/`, `+` or `#`
 * (MQTT 3.1.1 §4.7.1: those are the level separator and the wildcards).
 */
import type { EvidenceView, PeerView } from '../sync/view.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import type { EventType } from '../../ledger/lockevent.js';
import { OtiError } from '../../ledger/base/errors.js';

export const DEFAULT_HA_PREFIX = 'homeassistant';

/**
 * Who is connected: the gateway process itself, a peer gateway, an integration app, a read-only
 * client, Home Assistant's MQTT integration, or a fleet archive pulling the site's chains as a
 * read-only sync peer (docs/ARCHIVE.md §Pulling from sites).
 */
export type Role = 'local' | 'gateway' | 'app' | 'readonly' | 'homeassistant' | 'archive';

// ---------------------------------------------------------------------------------------------
// Payloads (JSON unless stated otherwise)

/** `oti/<site>/events/<lock>`: one newly committed lock event. */
export interface EventMessage {
  /** `<lock>:<ctr>`, the event's identity across gateways. */
  id: string;
  lock: string;
  ctr: number;
  type: EventType;
  /** The lock's clock, ms since 1970. */
  lockTime: number;
  /** The gateway that received the event from the lock. */
  gateway: string;
  /** The chain that holds it (its origin gateway). */
  chain: string;
  /** Position of the entry in that chain. */
  index: number;
  /** Hex RFC 9162 leaf hash of the entry. */
  entry: string;
  provenance: 'lock-signed' | 'unsigned';
  /** Block number that committed it. */
  block: number;
}

export type EventState = 'received' | 'committed' | 'replicated' | 'confirmed' | 'rejected';

interface StatusBase {
  id: string;
  /** Gateway clock, ms since 1970. */
  at: number;
}

/** `oti/<site>/status/<lock>/<ctr>`: the latest lifecycle state of one event (retained). */
export type StatusMessage =
  | (StatusBase & { state: 'received' })
  | (StatusBase & { state: 'committed'; index: number; entry: string; /** base64 of the CBOR receipt */ receipt: string })
  | (StatusBase & { state: 'replicated'; peers: number; cosigners: string[] })
  | (StatusBase & { state: 'confirmed'; quorum: number; cosigners: string[] })
  | (StatusBase & { state: 'rejected'; code: string });

/**
 * `oti/<site>/refused/<lock>/<ctr>` (not retained): a later copy of an event already committed
 * was refused (a replay with other content, a copy with a bad signature, ...). The event's own
 * status is left as it is: a committed event's status only moves forward.
 */
export interface RefusedCopyMessage {
  /** The committed event, `<lock>:<ctr>`. */
  id: string;
  /** Gateway clock, ms since 1970. */
  at: number;
  /** Why the copy was refused (an error code). */
  code: string;
  /** The committed event's index in the chain. */
  index: number;
}

/** `oti/<site>/gateways/<gw>/state` (retained). */
export interface GatewayStateMessage {
  state: 'online' | 'offline';
  at: number;
  /** With `online`, from the sync layer (docs/MQTT.md §Gateway state): its own chain, … */
  chain?: { origin: string; size: number };
  /** … the gateways of the site refused for equivocation (their key signs elsewhere too), … */
  compromised?: string[];
  /** … every other gateway as it sees it, … */
  peers?: PeerView[];
  /** … and the evidence it stores. */
  evidence?: EvidenceView[];
}

/** `oti/<site>/locks/unenrolled/<lock>` (retained): a lock that talks to the gateway but is not enrolled. */
export interface UnenrolledLockMessage {
  lock: string;
  /** Hex public key the lock presented, or null when it presented none. */
  key: string | null;
  fw: string;
  link: 'ble' | 'serial';
  seenAt: number;
}

/** `oti/<site>/lockstate/<lock>` (retained): the last known bolt state, the Home Assistant state topic. */
export interface LockStateMessage {
  state: 'LOCKED' | 'UNLOCKED' | 'JAMMED';
  /** The event that set this state. */
  id: string;
  at: number;
}

/**
 * `oti/<site>/lockinfo/<lock>` (retained): what the gateway last learnt about a lock besides its
 * bolt, the state topic of its Home Assistant battery, tamper and connectivity entities. `null`
 * is "not known yet" (Home Assistant shows unknown).
 */
export interface LockInfoMessage {
  lock: string;
  /** `low` once the lock has reported a `battery-low` event (no lock event reports it back to normal). */
  battery: 'low' | null;
  /** true once the lock has reported a `tamper` event. */
  tamper: true | null;
  /** The lock's link to this gateway: online while it is open or the lock's frames arrive. */
  link: 'online' | 'offline' | null;
  /** The firmware the lock reported in its info, when it has. */
  fw: string | null;
  at: number;
}

/** The Home Assistant entities of one lock, and the MQTT platform (component) of each. */
export const HA_ENTITIES = { event: 'event', bolt: 'sensor', battery: 'binary_sensor', tamper: 'binary_sensor', link: 'binary_sensor' } as const;
export type HaEntity = keyof typeof HA_ENTITIES;

/**
 * `<prefix>/<component>/oti_<site>/<lock>_<entity>/config` (retained): Home Assistant MQTT discovery of
 * one entity of a lock (gateway/notify/homeassistant.ts builds them; docs/MQTT.md §Home Assistant).
 */
export interface HaDiscoveryConfig {
  name: string;
  unique_id: string;
  state_topic: string;
  value_template: string;
  availability: { topic: string; value_template: string }[];
  device: { identifiers: string[]; name: string; manufacturer: string; model: string; sw_version?: string };
  origin: { name: string; sw_version: string };
  qos: 1;
  device_class?: string;
  entity_category?: 'diagnostic';
  event_types?: string[];
  options?: string[];
  payload_on?: string;
  payload_off?: string;
}

// ---------------------------------------------------------------------------------------------
// Descriptors

export type TopicDescriptor =
  | { kind: 'event'; site: string; lock: string }
  | { kind: 'status'; site: string; lock: string; ctr: number }
  | { kind: 'gatewayState'; site: string; gateway: string }
  | { kind: 'unenrolled'; site: string; lock: string }
  | { kind: 'lockState'; site: string; lock: string }
  | { kind: 'checkpoint'; site: string; gateway: string }
  | { kind: 'cosignature'; site: string; gateway: string; witness: string }
  | { kind: 'syncRequest'; site: string; gateway: string; requester: string }
  | { kind: 'syncRange'; site: string; gateway: string; requester: string }
  | { kind: 'evidence'; site: string; gateway: string }
  | { kind: 'lockInfo'; site: string; lock: string }
  /** `legacy`: the topic of earlier releases (`oti_<lock>/<entity>`, without the site), only ever cleared. */
  | { kind: 'haDiscovery'; prefix: string; lock: string; entity: HaEntity; legacy?: true }
  | { kind: 'haStatus'; prefix: string }
  | { kind: 'refused'; site: string; lock: string; ctr: number };

export type TopicKind = TopicDescriptor['kind'];

/** Payload type per topic kind, for typed publishing and parsing. Binary payloads are CBOR bytes. */
export interface TopicPayloads {
  event: EventMessage;
  status: StatusMessage;
  gatewayState: GatewayStateMessage;
  unenrolled: UnenrolledLockMessage;
  lockState: LockStateMessage;
  checkpoint: string;
  cosignature: string;
  syncRequest: Uint8Array;
  syncRange: Uint8Array;
  evidence: Uint8Array;
  lockInfo: LockInfoMessage;
  haDiscovery: HaDiscoveryConfig;
  haStatus: string;
  refused: RefusedCopyMessage;
}

export interface TopicInfo {
  readonly kind: TopicKind;
  /** The pattern as documented in docs/MQTT.md. */
  readonly pattern: string;
  readonly qos: 0 | 1;
  readonly retain: boolean;
  readonly payload: string;
  /** Who publishes it. */
  readonly publisher: string;
}

/** The documented map; docs/MQTT.md carries the same rows. */
export const TOPIC_TABLE: readonly TopicInfo[] = [
  { kind: 'event', pattern: 'oti/<site>/events/<lock>', qos: 1, retain: false, payload: 'JSON EventMessage', publisher: 'gateway (local)' },
  { kind: 'status', pattern: 'oti/<site>/status/<lock>/<ctr>', qos: 1, retain: true, payload: 'JSON StatusMessage', publisher: 'gateway (local)' },
  { kind: 'gatewayState', pattern: 'oti/<site>/gateways/<gw>/state', qos: 1, retain: true, payload: 'JSON GatewayStateMessage', publisher: 'gateway <gw> (also its last will)' },
  { kind: 'unenrolled', pattern: 'oti/<site>/locks/unenrolled/<lock>', qos: 1, retain: true, payload: 'JSON UnenrolledLockMessage', publisher: 'gateway (local)' },
  { kind: 'lockState', pattern: 'oti/<site>/lockstate/<lock>', qos: 1, retain: true, payload: 'JSON LockStateMessage', publisher: 'gateway (local)' },
  { kind: 'checkpoint', pattern: 'oti/<site>/chain/<gw>/checkpoint', qos: 1, retain: true, payload: 'text (signed checkpoint note, see docs/PROTOCOL.md)', publisher: 'gateway <gw>' },
  { kind: 'cosignature', pattern: 'oti/<site>/chain/<gw>/cosig/<witness>', qos: 1, retain: true, payload: 'text (checkpoint note with the witness cosignature line, see docs/PROTOCOL.md)', publisher: 'gateway <witness>' },
  { kind: 'syncRequest', pattern: 'oti/<site>/chain/<gw>/req/<requester>', qos: 1, retain: false, payload: 'binary (CBOR range request to <gw>, see docs/PROTOCOL.md)', publisher: 'gateway <requester>' },
  { kind: 'syncRange', pattern: 'oti/<site>/chain/<gw>/range/<requester>', qos: 1, retain: false, payload: 'binary (CBOR range from <gw>, see docs/PROTOCOL.md)', publisher: 'gateway <gw>' },
  { kind: 'evidence', pattern: 'oti/<site>/evidence/<gw>', qos: 1, retain: true, payload: 'binary (CBOR, see docs/PROTOCOL.md)', publisher: 'gateway <gw>' },
  { kind: 'lockInfo', pattern: 'oti/<site>/lockinfo/<lock>', qos: 1, retain: true, payload: 'JSON LockInfoMessage', publisher: 'gateway (local)' },
  { kind: 'haDiscovery', pattern: '<prefix>/<component>/oti_<site>/<lock>_<entity>/config', qos: 1, retain: true, payload: 'JSON HaDiscoveryConfig', publisher: 'gateway (local)' },
  // Home Assistant publishes its birth and last will here, not retained by default; a retained one is accepted.
  { kind: 'haStatus', pattern: '<prefix>/status', qos: 0, retain: true, payload: 'text: online or offline', publisher: 'Home Assistant (homeassistant role)' },
  { kind: 'refused', pattern: 'oti/<site>/refused/<lock>/<ctr>', qos: 1, retain: false, payload: 'JSON RefusedCopyMessage', publisher: 'gateway (local)' },
];

// ---------------------------------------------------------------------------------------------
// Builders and parser

const MAX_CTR = Number.MAX_SAFE_INTEGER;
const CTR_PATTERN = /^(0|[1-9][0-9]{0,15})$/;
/** Home Assistant discovery prefix: one or more levels of `[A-Za-z0-9_-]`. */
const HA_PREFIX_PATTERN = /^[A-Za-z0-9_-]{1,64}(\/[A-Za-z0-9_-]{1,64}){0,3}$/;
const HA_OBJECT_PREFIX = 'oti_';

/**
 * An id in a Home Assistant discovery node or object id: those allow only `[a-zA-Z0-9_-]`, so a
 * `.` is written `D` (ids are lower case, so the mapping is one to one).
 */
/** The Home Assistant component of one of our entities; ERR_ARGUMENT for any other name. */
function haComponent(entity: HaEntity): string {
  if (!Object.hasOwn(HA_ENTITIES, entity)) throw new OtiError('ERR_ARGUMENT', `entity must be one of ${Object.keys(HA_ENTITIES).join(', ')}`, { argument: 'entity' });
  return HA_ENTITIES[entity];
}

function haId(v: string): string {
  return v.replaceAll('.', 'D');
}

function id(what: string, v: string): string {
  if (typeof v !== 'string' || !ID_PATTERN.test(v)) {
    throw new OtiError('ERR_ARGUMENT', `${what} must match ${ID_PATTERN.source} to be used in a topic`, { argument: what });
  }
  return v;
}

function ctr(v: number): number {
  if (!Number.isSafeInteger(v) || v < 0) throw new OtiError('ERR_ARGUMENT', 'ctr must be an integer from 0 to 2^53-1', { argument: 'ctr' });
  return v;
}

/**
 * Topic builders and access rules for one site. Builders throw ERR_ARGUMENT for an identifier
 * that does not match ID_PATTERN, so no caller can build a topic with a wildcard or an extra level.
 */
export class TopicMap {
  readonly site: string;
  readonly haPrefix: string;
  readonly root: string;

  constructor(site: string, haPrefix: string = DEFAULT_HA_PREFIX) {
    this.site = id('site', site);
    if (!HA_PREFIX_PATTERN.test(haPrefix) || haPrefix.split('/')[0] === 'oti') {
      throw new OtiError('ERR_ARGUMENT', `haPrefix must be 1 to 4 levels of letters, digits, _ and -, not under oti/`, { argument: 'haPrefix' });
    }
    this.haPrefix = haPrefix;
    this.root = `oti/${site}`;
  }

  event(lock: string): string {
    return `${this.root}/events/${id('lock', lock)}`;
  }
  status(lock: string, counter: number): string {
    return `${this.root}/status/${id('lock', lock)}/${ctr(counter)}`;
  }
  gatewayState(gateway: string): string {
    return `${this.root}/gateways/${id('gateway', gateway)}/state`;
  }
  unenrolled(lock: string): string {
    return `${this.root}/locks/unenrolled/${id('lock', lock)}`;
  }
  lockState(lock: string): string {
    return `${this.root}/lockstate/${id('lock', lock)}`;
  }
  checkpoint(gateway: string): string {
    return `${this.root}/chain/${id('gateway', gateway)}/checkpoint`;
  }
  cosignature(gateway: string, witness: string): string {
    return `${this.root}/chain/${id('gateway', gateway)}/cosig/${id('witness', witness)}`;
  }
  syncRequest(gateway: string, requester: string): string {
    return `${this.root}/chain/${id('gateway', gateway)}/req/${id('requester', requester)}`;
  }
  syncRange(gateway: string, requester: string): string {
    return `${this.root}/chain/${id('gateway', gateway)}/range/${id('requester', requester)}`;
  }
  evidence(gateway: string): string {
    return `${this.root}/evidence/${id('gateway', gateway)}`;
  }
  lockInfo(lock: string): string {
    return `${this.root}/lockinfo/${id('lock', lock)}`;
  }
  haDiscovery(lock: string, entity: HaEntity): string {
    // Node id: the site (two sites on one broker may have a lock of the same id); object id: the lock and entity.
    return `${this.haPrefix}/${haComponent(entity)}/${HA_OBJECT_PREFIX}${haId(this.site)}/${haId(id('lock', lock))}_${entity}/config`;
  }
  /** The discovery topic of earlier releases, without the site: cleared once by the gateway, never published. */
  haLegacyDiscovery(lock: string, entity: HaEntity): string {
    return `${this.haPrefix}/${haComponent(entity)}/${HA_OBJECT_PREFIX}${haId(id('lock', lock))}/${entity}/config`;
  }
  /** Home Assistant's birth and last-will topic. */
  haStatus(): string {
    return `${this.haPrefix}/status`;
  }
  refused(lock: string, counter: number): string {
    return `${this.root}/refused/${id('lock', lock)}/${ctr(counter)}`;
  }

  /** The topic a descriptor names (the inverse of parse for descriptors of this site and prefix). */
  build(d: TopicDescriptor): string {
    switch (d.kind) {
      case 'event': return this.event(d.lock);
      case 'status': return this.status(d.lock, d.ctr);
      case 'gatewayState': return this.gatewayState(d.gateway);
      case 'unenrolled': return this.unenrolled(d.lock);
      case 'lockState': return this.lockState(d.lock);
      case 'checkpoint': return this.checkpoint(d.gateway);
      case 'cosignature': return this.cosignature(d.gateway, d.witness);
      case 'syncRequest': return this.syncRequest(d.gateway, d.requester);
      case 'syncRange': return this.syncRange(d.gateway, d.requester);
      case 'evidence': return this.evidence(d.gateway);
      case 'lockInfo': return this.lockInfo(d.lock);
      case 'haDiscovery': return d.legacy === true ? this.haLegacyDiscovery(d.lock, d.entity) : this.haDiscovery(d.lock, d.entity);
      case 'haStatus': return this.haStatus();
      case 'refused': return this.refused(d.lock, d.ctr);
    }
  }

  /**
   * A topic of this site (or of its Home Assistant prefix) as a typed descriptor; undefined for
   * anything not in the map, including a topic of another site and any topic with a wildcard.
   */
  parse(topic: string): TopicDescriptor | undefined {
    if (typeof topic !== 'string' || topic.length > 512) return undefined;
    const ha = this.haPrefix + '/';
    if (topic.startsWith(ha)) return parseHa(this.haPrefix, this.site, topic.slice(ha.length).split('/'));
    const d = parseTopic(topic);
    return d !== undefined && 'site' in d && d.site === this.site ? d : undefined;
  }

  /**
   * MQTT 3.1.1 §3.3: may a client of `role` with `identity` publish to `topic`? Only topics of
   * the map are publishable at all; see docs/MQTT.md §Roles for the table this implements.
   */
  mayPublish(role: Role, identity: string, topic: string): boolean {
    const d = this.parse(topic);
    if (d === undefined) return false;
    switch (role) {
      case 'local':
        return d.kind !== 'haStatus';
      case 'gateway':
        switch (d.kind) {
          case 'gatewayState':
          case 'checkpoint':
          case 'syncRange':
          case 'evidence':
            return d.gateway === identity;
          case 'syncRequest':
            return d.requester === identity;
          case 'cosignature':
            return d.witness === identity;
          default:
            return false;
        }
      case 'homeassistant':
        return d.kind === 'haStatus';
      case 'archive':
        // Its own range requests only: they make a gateway read its chain, never write anything.
        return d.kind === 'syncRequest' && d.requester === identity;
      case 'app':
      case 'readonly':
        return false;
    }
  }

  /**
   * MQTT 3.1.1 §3.8: may a client of `role` subscribe to `filter`? A filter is allowed only when
   * every topic it can match is readable by the role, so a wildcard can never reach further than
   * the role's own read set (`oti/#` from an app is refused, not narrowed).
   */
  maySubscribe(role: Role, identity: string, filter: string): boolean {
    if (!isValidFilter(filter)) return false;
    return this.readable(role, identity).some((allowed) => filterWithin(filter, allowed));
  }

  /** The filters a role (with `identity`, for the roles whose reads depend on it) may read, as MQTT filters. */
  readable(role: Role, identity = ''): string[] {
    const r = this.root;
    const p = this.haPrefix;
    // Home Assistant's discovery subscriptions, exactly as its MQTT integration makes them.
    const discovery = [`${p}/+/+/config`, `${p}/+/+/+/config`];
    const forApps = [`${r}/events/#`, `${r}/status/#`, `${r}/gateways/#`, `${r}/lockstate/#`, `${r}/lockinfo/#`, `${r}/refused/#`, ...discovery];
    switch (role) {
      case 'homeassistant':
        return [...forApps, `${p}/status`];
      case 'local':
      case 'gateway':
        return [`${r}/#`];
      case 'app':
        return [...forApps, `${r}/locks/#`];
      case 'readonly':
        return forApps;
      case 'archive':
        // The gateways' signed heads, their cosignatures of each other and the answers to its own requests: the four filters of docs/ARCHIVE.md §Pulling from sites.
        return ID_PATTERN.test(identity) ? [`${r}/chain/+/checkpoint`, `${r}/chain/+/cosig/+`, `${r}/chain/+/range/${identity}`] : [];
    }
  }
}

/** `<component>/oti_<site>/<lock>_<entity>/config`, or the legacy `<component>/oti_<lock>/<entity>/config`, of `site`. */
function parseHa(prefix: string, site: string, rest: string[]): TopicDescriptor | undefined {
  if (rest.length === 1 && rest[0] === 'status') return { kind: 'haStatus', prefix };
  if (rest.length !== 4 || rest[3] !== 'config') return undefined;
  const [component, node = '', object = ''] = rest;
  if (!node.startsWith(HA_OBJECT_PREFIX) || node.includes('.') || object.includes('.')) return undefined;
  const fromHa = (v: string): string => v.replaceAll('D', '.');
  // An entity name has no `_`: an object id that is one is the legacy form; the new one ends in `_<entity>`.
  const legacy = Object.hasOwn(HA_ENTITIES, object);
  const cut = object.lastIndexOf('_');
  const entity = legacy ? object : object.slice(cut + 1);
  if (!legacy && (cut < 1 || node !== `${HA_OBJECT_PREFIX}${haId(site)}`)) return undefined;
  if (!Object.hasOwn(HA_ENTITIES, entity) || HA_ENTITIES[entity as HaEntity] !== component) return undefined;
  const lock = fromHa(legacy ? node.slice(HA_OBJECT_PREFIX.length) : object.slice(0, cut));
  if (!ID_PATTERN.test(lock)) return undefined;
  return { kind: 'haDiscovery', prefix, lock, entity: entity as HaEntity, ...(legacy ? { legacy: true as const } : {}) };
}

/** Any `oti/<site>/...` topic of the map as a descriptor, whatever the site; undefined otherwise. */
export function parseTopic(topic: string): TopicDescriptor | undefined {
  if (typeof topic !== 'string' || topic.length > 512) return undefined;
  const p = topic.split('/');
  if (p[0] !== 'oti' || p.length < 4 || p.length > 6) return undefined;
  if (!p.every((seg, i) => i === 0 || seg.length > 0)) return undefined;
  const [, site = '', section = '', a = '', b, c] = p;
  if (!ID_PATTERN.test(site)) return undefined;
  const ok = (...ids: (string | undefined)[]): boolean => ids.every((x) => x !== undefined && ID_PATTERN.test(x));
  switch (section) {
    case 'events':
      return p.length === 4 && ok(a) ? { kind: 'event', site, lock: a } : undefined;
    case 'status':
    case 'refused':
      if (p.length !== 5 || !ok(a) || b === undefined || !CTR_PATTERN.test(b)) return undefined;
      return Number(b) <= MAX_CTR ? { kind: section, site, lock: a, ctr: Number(b) } : undefined;
    case 'gateways':
      return p.length === 5 && ok(a) && b === 'state' ? { kind: 'gatewayState', site, gateway: a } : undefined;
    case 'locks':
      return p.length === 5 && a === 'unenrolled' && ok(b) ? { kind: 'unenrolled', site, lock: b as string } : undefined;
    case 'lockstate':
      return p.length === 4 && ok(a) ? { kind: 'lockState', site, lock: a } : undefined;
    case 'lockinfo':
      return p.length === 4 && ok(a) ? { kind: 'lockInfo', site, lock: a } : undefined;
    case 'evidence':
      return p.length === 4 && ok(a) ? { kind: 'evidence', site, gateway: a } : undefined;
    case 'chain':
      if (!ok(a)) return undefined;
      if (p.length === 5 && b === 'checkpoint') return { kind: 'checkpoint', site, gateway: a };
      if (p.length !== 6 || !ok(c)) return undefined;
      if (b === 'cosig') return { kind: 'cosignature', site, gateway: a, witness: c as string };
      if (b === 'req') return { kind: 'syncRequest', site, gateway: a, requester: c as string };
      if (b === 'range') return { kind: 'syncRange', site, gateway: a, requester: c as string };
      return undefined;
    default:
      return undefined;
  }
}

/** MQTT 3.1.1 §4.7.1: `#` only as the whole last level, `+` only as a whole level; 1..512 characters. */
export function isValidFilter(filter: string): boolean {
  if (typeof filter !== 'string' || filter.length === 0 || filter.length > 512) return false;
  const levels = filter.split('/');
  return levels.every((l, i) => (l.includes('#') ? l === '#' && i === levels.length - 1 : !l.includes('+') || l === '+'));
}

/**
 * True when every topic matched by `filter` is also matched by `allowed` (both valid filters).
 * MQTT 3.1.1 §4.7.1.2: `#` also matches its parent level, so `a/#` covers `a` itself.
 */
export function filterWithin(filter: string, allowed: string): boolean {
  const f = filter.split('/');
  const a = allowed.split('/');
  for (let i = 0; ; i++) {
    const fa = f[i];
    const aa = a[i];
    if (aa === '#') return true;
    if (fa === undefined) return aa === undefined;
    if (aa === undefined) return false;
    if (fa === '#') return false;
    if (aa === '+') continue;
    if (fa === '+' || fa !== aa) return false;
  }
}
