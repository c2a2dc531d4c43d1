/**
 * The embedded MQTT broker (aedes 1.x, MQTT 3.1 and 3.1.1) with the gateway's security rules:
 *
 * - Authentication (MQTT 3.1.1 §3.1.3.4-5, §3.2.2.3): a client with no username is anonymous and
 *   gets the `readonly` role only when `allowAnonymous` is on, otherwise CONNACK 5 (not
 *   authorized). A username is looked up in the users file (gateway/broker/users.ts) and then, if
 *   it is not there, given to `verifyGatewayCredential`; a wrong password or unknown user gets
 *   CONNACK 4 (bad user name or password). With no verifier configured, no gateway can log in.
 *   Failed logins are budgeted per source address and overall, and credential checks (scrypt on
 *   the libuv threadpool, which LevelDB shares) run one at a time with a short line
 *   (gateway/broker/login-guard.ts): past the budgets CONNACK 5 or 3, unchecked. Every refused
 *   login is answered after about `login.refusalDelayMs` (#refuseLater).
 * - Client ids are scoped to the principal (`<role>:<identity>:<client id>`), so no principal can
 *   take over (MQTT 3.1.1 §3.1.4-2), read or lock out another's connection or session.
 * - Persistent sessions are bounded (gateway/broker/broker-sessions.ts and the files it names): a
 *   cap per principal, an expiry once offline, and a capped queue per session.
 * - ACLs from gateway/broker/topics.ts. A refused SUBSCRIBE filter gets return code 0x80 (§3.9.3). A
 *   refused PUBLISH closes the connection without acknowledging it, the one way MQTT 3.1.1
 *   offers to refuse a publish (MQTT-3.3.5-2); the message reaches no subscriber.
 * - Retained messages: only under chains of gateways on the roster, capped per principal
 *   (gateway/broker/retained.ts).
 * - Limits: every control packet larger than `maxMessageBytes` (its Remaining Length) closes the
 *   connection before the packet is buffered (gateway/broker/limits.ts); a client that publishes
 *   beyond its token bucket (`rateLimit`) is disconnected at the first publish over the limit.
 *   Its QoS 1 messages stay unacknowledged, so the client resends them after reconnecting.
 * - In-process publishing (`publish`) is the gateway itself (`local` role): it bypasses the
 *   per-client rules but may only use topics of the map.
 *
 * Only site-scoped topics exist; `$SYS` topics are neither publishable nor subscribable.
 * Sessions and retained messages are in memory and end with the broker.
 */
// First: mqtt-packet's number cache is turned off before aedes or mqtt.js writes a packet.
import './packet-writer.js';
import { Aedes, type Client, type PublishPacket, type Subscription } from 'aedes';
import { createServer as createTcpServer, type Server, type Socket } from 'node:net';
import { createServer as createTlsServer } from 'node:tls';
import { silentLogger, type Logger } from '../log.js';
import { OtiError, isOtiError, type ErrorCode } from '../../ledger/base/errors.js';
import { ID_PATTERN } from '../../ledger/schema.js';
import { TopicMap, TOPIC_TABLE, type Role, type TopicDescriptor, type TopicKind } from './topics.js';
import { readMqttUsers, verifyMqttUser } from './users.js';
import { DEFAULT_LOGIN_LIMITS, DEFAULT_MQTT_CONNECTION_CAPS, DEFAULT_RETAINED_CAPS, DEFAULT_SESSION_CAPS, FrameLimit, TokenBucket, type LoginLimits } from './limits.js';
import { LoginGuard } from './login-guard.js';
import { RepeatLog } from '../repeat-log.js';
import { capConnections } from '../connection-cap.js';
import { RetainedQuota } from './retained.js';
import { BrokerSessions, type SessionStats } from './broker-sessions.js';
import { checkOptions, readTlsFiles, type BrokerOptions } from './broker-options.js';

export type { BrokerOptions, GatewayCredentialVerifier } from './broker-options.js';

export interface BrokerStats extends SessionStats {
  clients: number;
  /** Client publishes accepted. */
  messagesIn: number;
  /** Logins, publishes, subscriptions and oversized packets refused. */
  refused: number;
  /** Retained messages clients hold on the broker (the gateway's own not counted), and their bytes. */
  retained: { messages: number; bytes: number };
  /** Client publishes refused, by error code. */
  publishesRefused: Record<string, number>;
  /** Retained publishes of peer gateways passed on without being retained, by reason (see #authorizePublish). */
  retainedNotKept: Record<string, number>;
  /** Logins refused, by error code. */
  loginsRefused: Record<string, number>;
  /** Connections refused (closed unread) because a connection cap was reached, by cap (`address` or `total`). */
  connectionsRefused: Record<string, number>;
}

interface Principal {
  readonly role: Exclude<Role, 'local'>;
  readonly identity: string;
}

/** MQTT 3.1.1 Table 3.1: CONNACK return codes used here. */
const CONNACK_SERVER_UNAVAILABLE = 3;
const CONNACK_BAD_CREDENTIALS = 4;
const CONNACK_NOT_AUTHORIZED = 5;
/** Time a client has to send its CONNECT (and to finish a TLS handshake), unless BrokerOptions say otherwise. */
const CONNECT_TIMEOUT_MS = 10_000;
/** How long close() waits for clients to go before cutting their sockets. */
const CLOSE_GRACE_MS = 1500;
const ANONYMOUS = 'anonymous';

type AuthError = OtiError & { returnCode: number };

export class Broker {
  readonly port: number;
  readonly tlsPort: number | undefined;
  readonly topics: TopicMap;
  readonly #aedes: Aedes;
  readonly #servers: Server[];
  readonly #sockets = new Set<Socket>();
  readonly #opts: BrokerOptions;
  readonly #log: Logger;
  readonly #principals = new WeakMap<Client, Principal>();
  readonly #buckets = new WeakMap<Client, TokenBucket>();
  readonly #sessions: BrokerSessions;
  readonly #retained: RetainedQuota;
  readonly #publishesRefused: Record<string, number> = {};
  readonly #retainedNotKept: Record<string, number> = {};
  readonly #loginsRefused: Record<string, number> = {};
  readonly #connectionsRefused: Record<string, number> = {};
  /** Connections over a cap waiting, unread, to be closed (#closeLater). */
  readonly #held = new Set<Socket>();
  readonly #login: LoginLimits;
  readonly #guard: LoginGuard;
  readonly #repeats = new RepeatLog();
  /** Refused logins waiting for their answer (#refuseLater), answered at once when the broker closes. */
  readonly #refusals = new Map<NodeJS.Timeout, () => void>();
  readonly #retainOf = new Map<TopicKind, boolean>(TOPIC_TABLE.map((t) => [t.kind, t.retain]));
  #messagesIn = 0;
  #refused = 0;
  #closing: Promise<void> | undefined;

  private constructor(opts: BrokerOptions, log: Logger, topics: TopicMap, aedes: Aedes, sessions: BrokerSessions, servers: Server[], ports: { port: number; tlsPort?: number }) {
    this.#opts = opts;
    this.#sessions = sessions;
    const retained = opts.retained ?? DEFAULT_RETAINED_CAPS;
    this.#login = opts.login ?? DEFAULT_LOGIN_LIMITS;
    this.#guard = new LoginGuard(this.#login);
    this.#retained = new RetainedQuota({ maxMessages: retained.maxPerPrincipal, maxBytes: retained.maxBytesPerPrincipal });
    this.topics = topics;
    this.#aedes = aedes;
    this.#servers = servers;
    this.port = ports.port;
    this.tlsPort = ports.tlsPort;
    this.#log = log;
  }

  /**
   * Starts the broker and its listeners. Bad options are ERR_ARGUMENT naming the key; a port
   * that is taken is ERR_PORT_IN_USE naming host:port.
   */
  static async start(opts: BrokerOptions): Promise<Broker> {
    checkOptions(opts);
    const topics = new TopicMap(opts.site, opts.haPrefix);
    const tlsFiles = opts.tls === undefined ? undefined : await readTlsFiles(opts.tls);
    const log = opts.logger ?? silentLogger();
    const sessions = new BrokerSessions(opts.sessions ?? DEFAULT_SESSION_CAPS, log);
    // aedes types its persistence option as the callback interface; it calls the promise one (aedes 1.x).
    const connectTimeout = opts.connectTimeoutMs ?? CONNECT_TIMEOUT_MS;
    const aedes = new Aedes({ persistence: sessions.persistence as never, connectTimeout, drainTimeout: 30_000, maxTopicLevels: 16, heartbeatInterval: 60_000 });
    const servers: Server[] = [];
    // Connections that arrive before the broker object exists are dropped.
    let onSocket = (socket: Socket): void => void socket.destroy();
    const accept = (socket: Socket): void => onSocket(socket);
    try {
      await aedes.listen();
      // Paused until the broker takes them (#accept): a connection over a cap is never read.
      const plain = createTcpServer({ pauseOnConnect: true }, accept);
      servers.push(plain);
      const port = await listen(plain, opts.host, opts.port);
      let tlsPort: number | undefined;
      if (opts.tls !== undefined && tlsFiles !== undefined) {
        // The handshake gets as long as a plain client gets to send its CONNECT.
        const secure = createTlsServer({ ...tlsFiles, handshakeTimeout: connectTimeout }, accept);
        servers.push(secure);
        tlsPort = await listen(secure, opts.host, opts.tls.port);
      }
      const broker = new Broker(opts, log, topics, aedes, sessions, servers, tlsPort === undefined ? { port } : { port, tlsPort });
      broker.#install();
      broker.#capConnections();
      onSocket = (socket) => broker.#accept(socket);
      for (const s of servers) {
        s.on('error', (e) => log.error({ err: e.message }, 'MQTT listener error'));
        // Node reports a failed or timed-out handshake here and leaves the socket open: closed
        // here, or a client that never finishes one would hold its connection (and a slot under
        // the connection caps) for as long as it likes.
        s.on('tlsClientError', (e: Error, tlsSocket: Socket) => {
          log.debug({ err: e.message }, 'TLS handshake failed');
          tlsSocket.destroy();
        });
      }
      log.debug({ host: opts.host, port, tlsPort }, 'MQTT broker listening');
      return broker;
    } catch (e) {
      sessions.close();
      for (const s of servers) s.close();
      await new Promise<void>((resolve) => aedes.close(() => resolve()));
      throw e;
    }
  }

  stats(): BrokerStats {
    return {
      clients: this.#aedes.connectedClients,
      messagesIn: this.#messagesIn,
      refused: this.#refused,
      ...this.#sessions.stats(),
      retained: this.#retained.total(),
      publishesRefused: { ...this.#publishesRefused },
      retainedNotKept: { ...this.#retainedNotKept },
      loginsRefused: { ...this.#loginsRefused },
      connectionsRefused: { ...this.#connectionsRefused },
    };
  }

  /**
   * Publishes as the gateway itself: no ACL, no rate limit, but only to topics of the map
   * (ERR_ARGUMENT otherwise) and at most `maxMessageBytes` of payload (ERR_FRAME_TOO_LARGE),
   * so the gateway never sends what its peers would refuse. Resolves once aedes has routed it
   * (and stored it, when retained).
   */
  publish(topic: string, payload: Buffer | string, opts: { qos: 0 | 1; retain: boolean }): Promise<void> {
    if (!this.topics.mayPublish('local', 'local', topic)) {
      return Promise.reject(new OtiError('ERR_ARGUMENT', `${topic} is not a topic of the map`, { argument: 'topic', topic }));
    }
    const body = typeof payload === 'string' ? Buffer.from(payload, 'utf8') : payload;
    if (body.length > this.#opts.maxMessageBytes) {
      return Promise.reject(new OtiError('ERR_FRAME_TOO_LARGE', `a ${body.length}-byte payload is over maxMessageBytes`, { topic, limit: this.#opts.maxMessageBytes }));
    }
    if (this.#closing !== undefined) return Promise.reject(new OtiError('ERR_STORE_CLOSED', 'the broker is closed'));
    const packet: PublishPacket = { cmd: 'publish', topic, payload: body, qos: opts.qos, retain: opts.retain, dup: false };
    if (opts.retain) this.#retained.release(topic);
    return new Promise((resolve, reject) => this.#aedes.publish(packet, (err) => (err ? reject(err) : resolve())));
  }

  /**
   * Hands the gateway, in-process, each message a client publishes on `topic` (a topic of the
   * map, no wildcard; the ACLs have let it through). Used for Home Assistant's birth message.
   */
  onMessage(topic: string, handler: (payload: Buffer) => void): Promise<void> {
    if (this.topics.parse(topic) === undefined) return Promise.reject(new OtiError('ERR_ARGUMENT', `${topic} is not a topic of the map`, { argument: 'topic', topic }));
    return new Promise((resolve) =>
      this.#aedes.subscribe(
        topic,
        (packet, done) => {
          handler(Buffer.from(packet.payload));
          done();
        },
        () => resolve(),
      ),
    );
  }

  /** Stops listening, disconnects every client and resolves within 2 s. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= this.#close();
    return this.#closing;
  }

  async #close(): Promise<void> {
    this.#sessions.close();
    for (const [timer, answer] of this.#refusals) {
      clearTimeout(timer);
      answer();
    }
    this.#refusals.clear();
    const serversClosed = this.#servers.map((s) => new Promise<void>((resolve) => s.close(() => resolve())));
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      new Promise<void>((resolve) => this.#aedes.close(() => resolve())),
      new Promise<void>((resolve) => (timer = setTimeout(resolve, CLOSE_GRACE_MS))),
    ]);
    clearTimeout(timer);
    for (const s of this.#sockets) s.destroy();
    for (const s of this.#held) s.destroy();
    await Promise.all(serversClosed);
    this.#log.info('MQTT broker closed');
  }

  #accept(socket: Socket): void {
    // Refused by a connection cap (#capConnections), or gone before the TLS handshake ended.
    if (socket.destroyed || this.#held.has(socket)) return;
    if (this.#closing !== undefined) {
      socket.destroy();
      return;
    }
    this.#sockets.add(socket);
    socket.once('close', () => this.#sockets.delete(socket));
    const conn = new FrameLimit(socket, this.#opts.maxMessageBytes);
    conn.once('error', (e: unknown) => {
      if (e instanceof OtiError) this.#closedFor(e, { remote: socket.remoteAddress });
    });
    this.#aedes.handle(conn);
    socket.resume();
  }

  /**
   * broker.maxConnections and broker.maxConnectionsPerAddress over both listeners, counted as
   * each TCP connection is accepted (a TLS one before its handshake); one more is refused
   * (#closeLater). Connections from the gateway's own host (loopback, or the address the broker
   * is bound to) are not counted: the gateway's own sync link comes from there, and a flood from
   * the network must not shut it out.
   */
  #capConnections(): void {
    const caps = { total: this.#opts.maxConnections ?? DEFAULT_MQTT_CONNECTION_CAPS.total, perAddress: this.#opts.maxConnectionsPerAddress ?? DEFAULT_MQTT_CONNECTION_CAPS.perAddress };
    const ownHost = new Set(['127.0.0.1', '::1', this.#opts.host]);
    capConnections(
      this.#servers,
      {
        ...caps,
        exempt: (address) => ownHost.has(address),
        onRefused: (reason, address) => {
          this.#connectionsRefused[reason] = (this.#connectionsRefused[reason] ?? 0) + 1;
          const key = reason === 'address' ? 'broker.maxConnectionsPerAddress' : 'broker.maxConnections';
          const code = 'ERR_TOO_MANY_CONNECTIONS';
          this.#log[this.#quiet(code) ? 'debug' : 'warn']({ remote: address, code, key, limit: reason === 'address' ? caps.perAddress : caps.total }, `MQTT connection refused: ${key} reached; it is closed unread`);
        },
      },
      // The plain listener is the first; a TLS connection is closed at once.
      (socket, _reason, _cap, server) => this.#closeLater(socket, server === this.#servers[0] ? caps.total : 0),
    );
  }

  /**
   * Closes a connection over a cap after about `login.refusalDelayMs`, unread: a client that
   * connects again as soon as it is closed (a flood's clients beyond the cap) then comes back
   * about once a delay, as a refused login does, instead of thousands of times a second. At most
   * `hold` such connections wait (each is a socket and no more); beyond, and for TLS (whose
   * handshake would go on meanwhile), the connection is closed at once.
   */
  #closeLater(socket: Socket, hold: number): void {
    const delay = this.#refusalDelay();
    if (delay === 0 || this.#held.size >= hold) {
      socket.destroy();
      return;
    }
    // Not read meanwhile: the plain listener's sockets start paused (pauseOnConnect).
    this.#held.add(socket);
    const timer = setTimeout(() => socket.destroy(), delay);
    socket.once('close', () => {
      clearTimeout(timer);
      this.#held.delete(socket);
    });
  }

  #install(): void {
    const a = this.#aedes;
    a.authenticate = (client, username, password, done) => {
      this.#authenticate(client, username, password).then(
        () => done(null, true),
        (e: unknown) => this.#refuseLater(() => done(e as AuthError, false)),
      );
    };
    a.authorizePublish = (client, packet, done) => done(this.#authorizePublish(client, packet));
    a.authorizeSubscribe = (client, sub, done) => {
      const r = this.#authorizeSubscribe(client, sub);
      if (r instanceof OtiError) done(r, null);
      else done(null, r);
    };
    a.on('clientError', (client, e) => {
      if (!(e instanceof OtiError)) this.#log.debug({ clientId: client.id, err: e.message }, 'MQTT client error');
    });
  }

  async #authenticate(client: Client, username: string | undefined, password: Buffer | undefined): Promise<void> {
    const remote = (client.conn as Partial<FrameLimit>).remoteAddress;
    const refuse = (returnCode: number, why: string, code: ErrorCode = 'ERR_MQTT_AUTH'): AuthError => {
      this.#refused++;
      this.#loginsRefused[code] = (this.#loginsRefused[code] ?? 0) + 1;
      // Never log the password; the username helps a technician find a misconfigured client.
      // Refusals by the flood guard are logged at warn once a minute per code, then at debug.
      this.#log[this.#quiet(code) ? 'debug' : 'warn']({ clientId: client.id, username, remote, returnCode, code }, 'MQTT login refused: %s', why);
      return Object.assign(new OtiError(code, why, { returnCode }), { returnCode });
    };
    let principal: Principal | undefined;
    if (username === undefined) {
      if (!this.#opts.allowAnonymous) throw refuse(CONNACK_NOT_AUTHORIZED, 'anonymous clients are not allowed');
      principal = { role: 'readonly', identity: ANONYMOUS };
    } else {
      principal = await this.#guardedCheck(username, password ?? Buffer.alloc(0), remote ?? 'unknown', refuse);
    }
    // An archive's requests and answers are named after it (req/<name>, range/<name>): under a gateway's name they would take that gateway's.
    if (principal.role === 'archive' && this.#opts.isRosterGateway?.(principal.identity) === true) {
      throw refuse(CONNACK_NOT_AUTHORIZED, `archive user ${principal.identity} has the name of a gateway of the site`);
    }
    if (!(await this.#sessions.open(client, `${principal.role}:${principal.identity}`))) {
      throw refuse(CONNACK_SERVER_UNAVAILABLE, 'this principal holds as many persistent sessions as it may, all connected', 'ERR_MQTT_SESSIONS');
    }
    this.#principals.set(client, principal);
    this.#buckets.set(client, new TokenBucket(this.#opts.rateLimit.messagesPerSecond, this.#opts.rateLimit.burst));
    this.#log.debug({ clientId: client.id, role: principal.role, identity: principal.identity, remote }, 'MQTT client logged in');
  }

  /** A credential check behind the failed-login guard (gateway/broker/login-guard.ts). */
  async #guardedCheck(username: string, password: Buffer, remote: string, refuse: (returnCode: number, why: string, code?: ErrorCode) => AuthError): Promise<Principal> {
    let principal: Principal | undefined;
    try {
      principal = await this.#guard.check(remote, () => this.#checkCredentials(username, password));
    } catch (e) {
      if (isOtiError(e, 'ERR_MQTT_BUSY')) throw refuse(CONNACK_SERVER_UNAVAILABLE, e.message, 'ERR_MQTT_BUSY');
      if (isOtiError(e, 'ERR_MQTT_LOGIN_RATE')) throw refuse(e.details?.['budget'] === 'address' ? CONNACK_NOT_AUTHORIZED : CONNACK_SERVER_UNAVAILABLE, e.message, 'ERR_MQTT_LOGIN_RATE');
      throw e;
    }
    if (principal === undefined) throw refuse(CONNACK_BAD_CREDENTIALS, 'unknown user or wrong password');
    return principal;
  }

  /**
   * Answers a refused login after `login.refusalDelayMs`. A client that logs in again as soon as it
   * is refused (a flood tool, a misconfigured integration) then costs the gateway one connection
   * per delay rather than one per round trip: without the delay, 500 such clients on loopback made
   * over 3,000 attempts a second and kept the gateway's main thread busy (docs/DECISIONS.md).
   */
  #refuseLater(answer: () => void): void {
    const delay = this.#refusalDelay();
    if (delay === 0) {
      answer();
      return;
    }
    const timer = setTimeout(() => {
      this.#refusals.delete(timer);
      answer();
    }, delay);
    this.#refusals.set(timer, answer);
  }

  /** `login.refusalDelayMs` × 0.5–1.5 at random (clients refused together come back spread out); 0 once closing. */
  #refusalDelay(): number {
    if (this.#closing !== undefined) return 0;
    return this.#login.refusalDelayMs * (0.5 + Math.random());
  }

  /** True when a flood-guard or connection-cap refusal with `code` was already logged at warn in the last minute. */
  #quiet(code: ErrorCode): boolean {
    if (code !== 'ERR_MQTT_LOGIN_RATE' && code !== 'ERR_MQTT_BUSY' && code !== 'ERR_TOO_MANY_CONNECTIONS') return false;
    return this.#repeats.admit('broker', code, Date.now()) === undefined;
  }

  async #checkCredentials(username: string, password: Buffer): Promise<Principal | undefined> {
    if (this.#opts.usersFile !== undefined) {
      try {
        const users = await readMqttUsers(this.#opts.usersFile);
        const role = await verifyMqttUser(users, username, password);
        if (role !== undefined) return { role, identity: username };
        // A name of the users file is never a gateway's: a wrong password ends here.
        if (users.some((u) => u.username === username)) return undefined;
      } catch (e) {
        // No users file yet is normal (a new gateway; gateways log in with their own credentials).
        if (isOtiError(e, 'ERR_NOT_FOUND')) this.#log.debug({ path: this.#opts.usersFile }, 'no MQTT users file: no app or read-only user can log in');
        else this.#log.error({ code: (e as OtiError).code, err: (e as Error).message }, 'MQTT users file unreadable; app logins refused');
      }
    }
    const verify = this.#opts.verifyGatewayCredential;
    if (verify === undefined) return undefined;
    try {
      const gw = await verify(username, password);
      if (gw !== undefined && ID_PATTERN.test(gw.gatewayId)) return { role: 'gateway', identity: gw.gatewayId };
    } catch (e) {
      this.#log.warn({ err: (e as Error).message }, 'gateway credential check failed');
    }
    return undefined;
  }

  #authorizePublish(client: Client | null, packet: PublishPacket): OtiError | null {
    const principal = client === null ? undefined : this.#principals.get(client);
    const refuse = (code: ErrorCode, why: string): OtiError => {
      this.#refused++;
      this.#publishesRefused[code] = (this.#publishesRefused[code] ?? 0) + 1;
      this.#log.warn({ clientId: client?.id, role: principal?.role, identity: principal?.identity, topic: packet.topic, code }, 'MQTT publish refused: %s', why);
      return new OtiError(code, why, { topic: packet.topic });
    };
    if (client === null || principal === undefined) return refuse('ERR_MQTT_ACL', 'publish from an unknown client');
    if (packet.topic.includes('\u0000')) return refuse('ERR_FRAME_MALFORMED', 'the topic holds U+0000 (MQTT 3.1.1 §1.5.3)');
    // A will is published while its client closes; it is not counted against the rate.
    if (!client.closed && this.#buckets.get(client)?.take() !== true) return refuse('ERR_MQTT_RATE', 'over the rate limit');
    if (!this.topics.mayPublish(principal.role, principal.identity, packet.topic)) return refuse('ERR_MQTT_ACL', 'topic not allowed for this role');
    const d = this.topics.parse(packet.topic);
    if (packet.retain && d !== undefined) {
      if (this.#retainOf.get(d.kind) !== true) return refuse('ERR_MQTT_ACL', 'this topic is never retained');
      if (this.#notOnRoster(principal, d)) {
        const why = `gateway ${d.gateway} is not on the roster: nothing is retained under its chain`;
        if (principal.role !== 'gateway') return refuse('ERR_MQTT_ACL', why);
        // A peer gateway that cosigns a chain this gateway does not hold yet (still on its way
        // here) is no attacker: closing its connection would cut its pulls and make its link
        // flap until the chain arrives. The message reaches the live subscribers; nothing is kept.
        packet.retain = false;
        this.#retainedNotKept['not-on-roster'] = (this.#retainedNotKept['not-on-roster'] ?? 0) + 1;
        this.#log.debug({ clientId: client.id, identity: principal.identity, topic: packet.topic }, 'retained publish passed on without being retained: %s', why);
      } else {
        const over = this.#overRetainedCap(principal, packet);
        if (over !== undefined) return refuse('ERR_MQTT_RETAINED', over);
      }
    }
    this.#messagesIn++;
    return null;
  }

  /**
   * Nothing is retained under the chain of a gateway that is not on the roster (anyone could
   * otherwise fill the broker with invented chains).
   */
  #notOnRoster(principal: Principal, d: TopicDescriptor): d is Extract<TopicDescriptor, { gateway: string }> {
    return 'gateway' in d && d.gateway !== principal.identity && this.#opts.isRosterGateway?.(d.gateway) !== true;
  }

  /** Counts a retained publish against its principal's caps; says which cap it is over, if any. */
  #overRetainedCap(principal: Principal, packet: PublishPacket): string | undefined {
    const bytes = typeof packet.payload === 'string' ? Buffer.byteLength(packet.payload) : packet.payload.length;
    const over = this.#retained.admit(`${principal.role}:${principal.identity}`, packet.topic, bytes);
    if (over === undefined) return undefined;
    const caps = this.#opts.retained ?? DEFAULT_RETAINED_CAPS;
    const cap = over === 'messages' ? `${caps.maxPerPrincipal} retained messages` : `${caps.maxBytesPerPrincipal} bytes of retained messages`;
    return `over the cap of ${cap} per principal`;
  }

  /** A filter refused gets 0x80 in the SUBACK (null); one that holds U+0000 closes the connection (an error). */
  #authorizeSubscribe(client: Client, sub: Subscription): Subscription | null | OtiError {
    // MQTT 3.1.1 §1.5.3: a receiver of a string holding U+0000 MUST close the connection [MQTT-1.5.3-2]; neither aedes nor mqtt-packet checks.
    if (sub.topic.includes('\u0000')) return this.#closedFor(new OtiError('ERR_FRAME_MALFORMED', 'a topic filter holds U+0000 (MQTT 3.1.1 §1.5.3)'), { clientId: client.id });
    const principal = this.#principals.get(client);
    if (principal !== undefined && this.topics.maySubscribe(principal.role, principal.identity, sub.topic)) return sub;
    this.#refused++;
    this.#log.warn({ clientId: client.id, role: principal?.role, identity: principal?.identity, filter: sub.topic, code: 'ERR_MQTT_ACL' }, 'MQTT subscription refused');
    return null;
  }
  /** Counts and logs a connection closed for malformed or oversized input; returns the error it is closed with. */
  #closedFor(e: OtiError, who: { remote?: string | undefined; clientId?: string }): OtiError {
    this.#refused++;
    this.#log.warn({ ...who, code: e.code }, 'MQTT connection closed: %s', e.message);
    return e;
  }
}

/** Listens and resolves to the bound port; EADDRINUSE becomes ERR_PORT_IN_USE naming host:port. */
function listen(server: Server, host: string, port: number): Promise<number> {
  return new Promise((resolve, reject) => {
    const onError = (e: NodeJS.ErrnoException): void => {
      if (e.code === 'EADDRINUSE') reject(new OtiError('ERR_PORT_IN_USE', `${host}:${port} is already in use`, { host, port }, { cause: e }));
      else reject(e);
    };
    server.once('error', onError);
    server.listen(port, host, () => {
      server.off('error', onError);
      const addr = server.address();
      resolve(typeof addr === 'object' && addr !== null ? addr.port : port);
    });
  });
}
