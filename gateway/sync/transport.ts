/**
 * The seam between sync and the network (docs/DECISIONS.md §Sync transport seam). A SyncNode
 * holds one link per broker; everything it needs from a link is here, shaped by what MQTT gives
 * it and nothing more:
 *
 * - connect: one link per URL; the transport keeps reconnecting a link that drops, each time
 *   with a fresh login, until end(). Every (re)connection is a clean session (MQTT 3.1.1
 *   §3.1.2.4): subscriptions do not survive it, so the node subscribes again on each 'connect'.
 * - subscribe: topic filters with the MQTT wildcards `+` and `#` (§4.7); resolves on the SUBACK;
 *   retained messages matching the filters (§3.3.1.3) arrive after it, flagged as retained.
 * - publish: QoS 0 or 1 (at least once: a message may arrive twice); `retain` keeps it on the broker
 *   as the topic's last message, an empty retained payload removes it. A QoS 1 publication made
 *   while the link is down waits for the next connection (so may never settle before end()).
 *   A client receives its own publications when it is subscribed to them (MQTT has no "no local").
 * - will: published by the broker, retained, when a link is lost without a clean disconnect.
 * - events: 'connect' on each (re)connection, 'close' when the connection goes, 'message' for
 *   each message delivered, 'error' for a connection that failed (a retry follows).
 *
 * Two implementations: MQTT over mqtt.js (transport-mqtt.ts, production) and an in-memory pipe
 * joining several nodes in one process, with fault injection (transport-pipe.ts, tests).
 */
import type { GatewayLogin } from '../broker/credentials.js';

export type SyncQos = 0 | 1;

export interface SyncLinkOptions {
  /** MQTT client id of the link (informational for the pipe). */
  readonly clientId: string;
  /** Called for each (re)connection: a credential is fresh for a limited time. */
  readonly login: () => GatewayLogin;
  /** Published by the broker (retained, QoS 1) when the link is lost without a clean end. */
  readonly will: { readonly topic: string; readonly payload: Buffer };
}

export interface SyncLinkEvents {
  connect: [];
  close: [];
  message: [topic: string, payload: Buffer, retained: boolean];
  error: [Error];
}

type Listener<K extends keyof SyncLinkEvents> = (...args: SyncLinkEvents[K]) => void;

export interface SyncLink {
  readonly url: string;
  /** True while the link has a connection (between a 'connect' and the next 'close'). */
  readonly connected: boolean;
  subscribe(filters: readonly string[], qos: SyncQos): Promise<void>;
  publish(topic: string, payload: Buffer | string, opts: { qos: SyncQos; retain: boolean }): Promise<void>;
  /** Closes the link for good (no reconnection); publications still waiting are abandoned. */
  end(): Promise<void>;
  on<K extends keyof SyncLinkEvents>(event: K, listener: Listener<K>): unknown;
  once<K extends keyof SyncLinkEvents>(event: K, listener: Listener<K>): unknown;
  off<K extends keyof SyncLinkEvents>(event: K, listener: Listener<K>): unknown;
}

export interface SyncTransport {
  /** Starts connecting a link to `url` and returns it at once (it emits 'connect' or 'error'). */
  connect(url: string, opts: SyncLinkOptions): SyncLink;
}
