/**
 * Home Assistant over MQTT discovery (docs/MQTT.md §Home Assistant): each enrolled lock becomes a
 * device with entities that show what the gateway knows from the chain and the links, and no
 * control (the gateway records locks, it does not drive them):
 *
 * | entity  | platform      | state topic                  | what it shows |
 * |---------|---------------|------------------------------|---------------|
 * | event   | event         | `oti/<site>/events/<lock>`   | each committed lock event, as its type |
 * | bolt    | sensor (enum) | `oti/<site>/lockstate/<lock>`| locked, unlocked, jammed |
 * | battery | binary_sensor | `oti/<site>/lockinfo/<lock>` | low once the lock reported `battery-low` |
 * | tamper  | binary_sensor | `oti/<site>/lockinfo/<lock>` | on once the lock reported `tamper` |
 * | link    | binary_sensor | `oti/<site>/lockinfo/<lock>` | connectivity of the lock's link to this gateway |
 *
 * Every entity is available while the gateway's state topic says online (its last will says
 * offline). The device carries the lock's firmware (`sw_version`) once the lock has reported it
 * in its info. Discovery configs are retained; they are published again when Home Assistant
 * announces `online` on `<prefix>/status` (its birth message), so a restarted Home Assistant
 * finds every lock even on a broker that keeps no retained messages. A revoked lock's configs
 * are cleared (an empty retained message removes the entity). Discovery topics carry the site
 * (`<prefix>/<component>/oti_<site>/<lock>_<entity>/config`): two sites on one broker may have
 * locks of the same id. Before a lock's first config since start, its config under the older
 * topic without the site is cleared (upgrades from earlier releases).
 *
 * What is waiting to be published is one flag per lock and kind (configs, lockinfo), so the work
 * pending is bounded by the roster whatever the event rate.
 *
 * The facts live in memory; at start, battery and tamper are read back from each enrolled lock's
 * last events in the chain (status-rebuild.ts, bounded) and its lockinfo published again, as the
 * notifier does with the bolt state. Link and firmware are not in the chain: they are known once
 * the lock is heard.
 */
import { createRequire } from 'node:module';
import type { Logger } from '../log.js';
import { listen } from '../../ledger/base/events.js';
import type { Chain, BlockEvent } from '../../ledger/chain.js';
import { EVENT_TYPES } from '../../ledger/lockevent.js';
import type { DriverNotice, ReceivedEvent } from '../../drivers/driver.js';
import type { AppendResult } from '../../ledger/chain.js';
import type { Ingest } from '../ingest.js';
import { RepeatLog } from '../repeat-log.js';
import { HA_ENTITIES, type HaDiscoveryConfig, type HaEntity, type LockInfoMessage, type TopicMap } from '../broker/topics.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { chainFacts } from './status-rebuild.js';

const VERSION = (createRequire(import.meta.url)('../../../package.json') as { version: string }).version;

/** Where the bridge publishes: the embedded broker (`Broker.publish`) or an external one. */
export interface MqttPublisher {
  publish(topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean }): Promise<void>;
}

/** The discovery config of each entity of `lock` (see the table above). */
export function haDiscoveryConfigs(topics: TopicMap, lock: string, gatewayId: string, fw: string | null): { topic: string; entity: HaEntity; config: HaDiscoveryConfig }[] {
  const device = { identifiers: [`oti_${topics.site}_${lock}`], name: `Lock ${lock}`, manufacturer: 'OTI', model: 'OTI lock', ...(fw !== null ? { sw_version: fw } : {}) };
  const base = (entity: HaEntity, name: string, stateTopic: string, valueTemplate: string): HaDiscoveryConfig => ({
    name,
    unique_id: `oti_${topics.site}_${lock}_${entity}`,
    state_topic: stateTopic,
    value_template: valueTemplate,
    availability: [{ topic: topics.gatewayState(gatewayId), value_template: '{{ value_json.state }}' }],
    device,
    origin: { name: 'OTI Gateway', sw_version: VERSION },
    qos: 1,
  });
  // A binary sensor's template renders ON, OFF, or None (unknown) when the fact is not known yet.
  const info = topics.lockInfo(lock);
  const configs: Record<HaEntity, HaDiscoveryConfig> = {
    event: { ...base('event', 'Event', topics.event(lock), "{{ {'event_type': value_json.type, 'id': value_json.id, 'provenance': value_json.provenance, 'entry': value_json.entry} | tojson }}"), event_types: [...EVENT_TYPES] },
    bolt: { ...base('bolt', 'Bolt', topics.lockState(lock), '{{ value_json.state | lower }}'), device_class: 'enum', options: ['locked', 'unlocked', 'jammed'] },
    battery: { ...base('battery', 'Battery', info, "{{ 'ON' if value_json.battery == 'low' else 'None' }}"), device_class: 'battery', payload_on: 'ON', payload_off: 'OFF' },
    tamper: { ...base('tamper', 'Tamper', info, "{{ 'ON' if value_json.tamper else 'None' }}"), device_class: 'tamper', payload_on: 'ON', payload_off: 'OFF' },
    link: {
      ...base('link', 'Link', info, "{{ {'online': 'ON', 'offline': 'OFF'}.get(value_json.link, 'None') }}"),
      device_class: 'connectivity',
      entity_category: 'diagnostic',
      payload_on: 'ON',
      payload_off: 'OFF',
    },
  };
  return (Object.keys(HA_ENTITIES) as HaEntity[]).map((entity) => ({ topic: topics.haDiscovery(lock, entity), entity, config: configs[entity] }));
}

export interface HomeAssistantOptions {
  readonly out: MqttPublisher;
  readonly topics: TopicMap;
  readonly chain: Chain;
  readonly ingest: Ingest;
  readonly gatewayId: string;
  readonly logger?: Logger;
  readonly now?: () => number;
}

interface LockFacts {
  battery: 'low' | null;
  tamper: true | null;
  link: 'online' | 'offline' | null;
  fw: string | null;
  /** The link (driver link id) the lock was last heard on. */
  via: string | undefined;
}

export class HomeAssistantBridge {
  readonly #o: HomeAssistantOptions;
  readonly #now: () => number;
  readonly #facts = new Map<string, LockFacts>();
  /** Locks whose discovery configs are published (and with which firmware). */
  readonly #announced = new Map<string, string | null>();
  /** Locks whose configs under the legacy topics (without the site) were cleared since start. */
  readonly #legacyCleared = new Set<string>();
  /** Locks whose configs, or lockinfo, wait to be published; revoked locks whose configs wait to be cleared. */
  readonly #pendingConfig = new Set<string>();
  readonly #pendingInfo = new Set<string>();
  readonly #pendingClear = new Set<string>();
  readonly #offs: Array<() => void> = [];
  readonly #birthLog = new RepeatLog();
  #pump: Promise<void> | undefined;
  /** Reading the facts back from the chain, at start. */
  #rebuilding: Promise<void> | undefined;
  #stopped = false;

  constructor(o: HomeAssistantOptions) {
    this.#o = o;
    this.#now = o.now ?? Date.now;
  }

  /** Publishes the discovery configs of every enrolled lock and follows the roster, events and links. */
  start(): Promise<void> {
    const { chain, ingest } = this.#o;
    const onBlock = (b: BlockEvent): void => {
      if (b.results.some((r) => r.entry.body.kind === 'roster' && r.entry.body.signed.statement.role === 'lock')) this.#syncRoster();
    };
    const onReceived = (ev: ReceivedEvent): void => this.#heard(ev.lock, ev.from.link, ev.info?.fw);
    const onCommitted = (ev: ReceivedEvent, r: AppendResult): void => {
      const body = r.entry.body;
      if (body.kind !== 'lock-event') return;
      if (body.event.type === 'battery-low') this.#update(ev.lock, { battery: 'low' });
      if (body.event.type === 'tamper') this.#update(ev.lock, { tamper: true });
    };
    const onNotice = (n: DriverNotice): void => {
      if (n.kind === 'lock-seen') this.#heard(n.info.lock, n.from.link, n.info.fw);
      else if (n.kind === 'link' && (n.state === 'closed' || n.state === 'backoff')) {
        for (const [lock, f] of this.#facts) if (f.via === n.from.link && f.link !== 'offline') this.#update(lock, { link: 'offline' });
      }
    };
    this.#offs.push(listen(chain, { block: onBlock }), listen(ingest, { received: onReceived, committed: onCommitted, notice: onNotice }));
    this.#syncRoster();
    this.#rebuilding = this.#rebuild().catch((e: unknown) => this.#o.logger?.warn({ err: e }, 'could not read the locks\' battery and tamper back from the chain'));
    // Resolves once the configs are published, without waiting for the facts read back.
    return this.#drained();
  }

  /** Battery and tamper of every enrolled lock, from the chain; facts heard since start are kept. */
  async #rebuild(): Promise<void> {
    let locks = 0;
    for (const m of [...this.#o.chain.roster.members()]) {
      if (m.role !== 'lock' || m.revoked || this.#stopped) continue;
      const facts = await chainFacts(this.#o.chain, m.id);
      if (!this.#enrolled(m.id)) continue;
      const f = this.#factsOf(m.id);
      f.battery ??= facts.battery;
      f.tamper ??= facts.tamper;
      this.#pendingInfo.add(m.id);
      locks++;
    }
    this.#kick();
    this.#o.logger?.debug({ locks }, `lock info of ${locks} locks read back from the ledger`);
  }

  /** Resolves once the pump has published everything waiting. */
  async #drained(): Promise<void> {
    while (this.#pump !== undefined) await this.#pump;
  }

  /**
   * Home Assistant's birth or last will on `<prefix>/status`: on `online`, every config and every
   * known lockinfo is published again (Home Assistant's documented way to rediscover devices).
   */
  birth(payload: string): void {
    if (payload.trim() !== 'online' || this.#stopped) return;
    // Anyone who may publish there (the Home Assistant user) can send thousands of births: the
    // republishing is coalesced (#kick), and the line is logged once a minute, with a count.
    const admitted = this.#birthLog.admit('homeassistant', 'online', this.#now());
    if (admitted !== undefined) {
      const more = admitted.suppressed > 0 ? ` (and ${admitted.suppressed} more births since the last such line)` : '';
      this.#o.logger?.info({ suppressed: admitted.suppressed }, `Home Assistant is online: publishing the discovery configs again${more}`);
    }
    this.#announced.clear();
    for (const lock of this.#facts.keys()) this.#pendingInfo.add(lock);
    this.#syncRoster();
  }

  /** Resolves once nothing is waiting to be published (and the facts are read back from the chain). */
  async idle(): Promise<void> {
    await this.#rebuilding;
    await this.#drained();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    for (const off of this.#offs.splice(0)) off();
    await this.idle();
  }

  #syncRoster(): void {
    for (const m of this.#o.chain.roster.members()) {
      if (m.role !== 'lock') continue;
      if (m.revoked) {
        if (this.#announced.delete(m.id)) this.#pendingClear.add(m.id);
        this.#facts.delete(m.id);
      } else if (!this.#announced.has(m.id)) this.#pendingConfig.add(m.id);
    }
    this.#kick();
  }

  #enrolled(lock: string): boolean {
    const m = this.#o.chain.roster.get('lock', lock);
    return m !== undefined && !m.revoked;
  }

  #heard(lock: string, via: string, fw: string | undefined): void {
    if (!this.#enrolled(lock)) return;
    const f = this.#factsOf(lock);
    f.via = via;
    const firmware = fw ?? f.fw;
    if (f.link !== 'online' || firmware !== f.fw) this.#update(lock, { link: 'online', fw: firmware });
    if (this.#announced.has(lock) && this.#announced.get(lock) !== firmware) {
      this.#pendingConfig.add(lock);
      this.#kick();
    }
  }

  #factsOf(lock: string): LockFacts {
    let f = this.#facts.get(lock);
    if (f === undefined) {
      f = { battery: null, tamper: null, link: null, fw: null, via: undefined };
      this.#facts.set(lock, f);
    }
    return f;
  }

  #update(lock: string, change: Partial<LockFacts>): void {
    if (!this.#enrolled(lock)) return;
    Object.assign(this.#factsOf(lock), change);
    this.#pendingInfo.add(lock);
    this.#kick();
  }

  #kick(): void {
    if (this.#pump !== undefined || this.#stopped) return;
    this.#pump = this.#drain().finally(() => (this.#pump = undefined));
  }

  async #drain(): Promise<void> {
    const take = (s: Set<string>): string | undefined => {
      const v = s.values().next();
      if (v.done === true) return undefined;
      s.delete(v.value);
      return v.value;
    };
    for (;;) {
      const clear = take(this.#pendingClear);
      const config = clear === undefined ? take(this.#pendingConfig) : undefined;
      const info = clear === undefined && config === undefined ? take(this.#pendingInfo) : undefined;
      if (clear === undefined && config === undefined && info === undefined) return;
      try {
        if (clear !== undefined) await this.#clear(clear);
        if (config !== undefined) await this.#announce(config);
        if (info !== undefined) await this.#publishInfo(info);
      } catch (e) {
        // A full external backlog is counted and logged (once a minute) by the external broker.
        if (!isOtiError(e, 'ERR_MQTT_BACKLOG')) this.#o.logger?.warn({ err: e }, 'a Home Assistant message could not be published');
      }
    }
  }

  async #announce(lock: string): Promise<void> {
    if (!this.#enrolled(lock)) return;
    const fw = this.#facts.get(lock)?.fw ?? null;
    this.#announced.set(lock, fw);
    if (!this.#legacyCleared.has(lock)) {
      // Configs of earlier releases were under topics without the site: cleared first, so
      // that Home Assistant drops them before it sees the same unique_ids under the new topics.
      for (const entity of Object.keys(HA_ENTITIES) as HaEntity[]) await this.#o.out.publish(this.#o.topics.haLegacyDiscovery(lock, entity), '', { qos: 1, retain: true });
      this.#legacyCleared.add(lock);
    }
    for (const c of haDiscoveryConfigs(this.#o.topics, lock, this.#o.gatewayId, fw)) await this.#o.out.publish(c.topic, JSON.stringify(c.config), { qos: 1, retain: true });
  }

  async #clear(lock: string): Promise<void> {
    // An empty retained message removes the retained one (MQTT 3.1.1 §3.3.1.3) and, for a
    // discovery topic, the entity from Home Assistant.
    for (const c of haDiscoveryConfigs(this.#o.topics, lock, this.#o.gatewayId, null)) await this.#o.out.publish(c.topic, '', { qos: 1, retain: true });
    await this.#o.out.publish(this.#o.topics.lockInfo(lock), '', { qos: 1, retain: true });
  }

  async #publishInfo(lock: string): Promise<void> {
    const f = this.#facts.get(lock);
    if (f === undefined || !this.#enrolled(lock)) return;
    const msg: LockInfoMessage = { lock, battery: f.battery, tamper: f.tamper, link: f.link, fw: f.fw, at: this.#now() };
    await this.#o.out.publish(this.#o.topics.lockInfo(lock), JSON.stringify(msg), { qos: 1, retain: true });
  }
}
