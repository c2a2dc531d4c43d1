/**
 * The seam between discovery (gateway/discovery/discovery.ts: what is announced, what is believed)
 * and an mDNS implementation (mdns-js.ts built in, mdns-avahi.ts through the system daemon). Its
 * own file so that the backends and discovery import it and not each other.
 */
/** What a backend advertises: one service instance. */
export interface Advertisement {
  /** Instance label: one DNS label (no dots). */
  readonly instance: string;
  readonly port: number;
  readonly txt: readonly Buffer[];
  /** Record TTL in seconds; 0 in a goodbye. */
  readonly ttlS: number;
}

/** A TXT record a backend heard for some `<instance>._oti._tcp.local`. */
export interface Sighting {
  readonly instance: string;
  readonly txt: readonly Uint8Array[];
  /** The record TTL in seconds, when the backend knows it. */
  readonly ttlS: number | undefined;
  readonly address: string;
  readonly from: string;
}

export interface BackendSink {
  sighting(s: Sighting): void;
  /** The backend (the Avahi daemon) saw an instance go away. */
  gone(instance: string): void;
  warning(e: Error): void;
}

/**
 * The seam to an mDNS implementation. start() rejects with an OtiError when the backend cannot
 * run here (ERR_DRIVER_UNAVAILABLE, ERR_PORT_IN_USE); publish() replaces the advertisement (each
 * call is an announcement of the new record); stop() sends the goodbye if given, then releases
 * everything. Backends pass on what they hear and verify nothing.
 */
export interface MdnsBackend {
  start(sink: BackendSink): Promise<void>;
  publish(ad: Advertisement): void;
  stop(goodbye?: Advertisement): Promise<void>;
}
