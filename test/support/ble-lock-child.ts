/**
 * A lock on a real BLE host stack: @stoprocent/bleno (its own HCI, L2CAP, ATT and GATT code)
 * over the UART HCI transport to a virtual controller (test/support/hci-controller.ts), serving
 * the OTI GATT service of docs/PROTOCOL.md §BLE, with drivers/simlock.ts as the lock's logic.
 * Run by test/support/ble-hci-rig.ts through child_process.fork, one per scenario, because bleno
 * keeps its HCI socket and timers for the life of its process.
 *
 *   node dist/test/support/ble-lock-child.js <pty path> <lock id> <seed hex>
 *
 * IPC, parent → child: {t:'record', n} records n events; {t:'disconnect'} makes the lock drop
 * its link (HCI Disconnect, reason 0x13); {t:'raw', hex} sends those bytes as one message as
 * they are (garbage). Child → parent: {t:'ready'} once bleno is powered on and advertising,
 * {t:'ack', ctr, entry} for each ack the lock took, {t:'nack', ctr, code, retry} for each nack
 * it acted on, {t:'state', pending, sent} after each of those and whenever the lock's counts
 * change, {t:'link', up} on connection changes, {t:'fail', message} before exiting on an error. The child exits when its
 * IPC channel closes, and by itself after OTI_BLE_CHILD_MAX_MS (default 120 s).
 */
import { createRequire } from 'node:module';
import { SimLock } from '../../drivers/simlock.js';
import { ACK_CHAR_UUID, EVENTS_CHAR_UUID, INFO_CHAR_UUID, MESSAGE_MAX_BYTES, SERVICE_UUID, encodeAdvertisement, encodeMessage } from '../../drivers/protocol.js';
import { Reassembler, fragment } from '../../drivers/framing.js';

/** The part of bleno this child uses (its own typings describe the same calls). */
interface Bleno {
  on(event: 'stateChange', f: (state: string) => void): void;
  on(event: 'accept', f: (address: string, handle: number) => void): void;
  on(event: 'disconnect', f: (address: string, handle: number) => void): void;
  startAdvertisingWithEIRData(adv: Buffer, scan: Buffer, cb: (e?: Error | null) => void): void;
  setServices(services: unknown[], cb: (e?: Error | null) => void): void;
  disconnect(): void;
  readonly PrimaryService: new (o: object) => unknown;
  readonly Characteristic: new (o: object) => unknown;
}

type Send = (data: Buffer) => void;

const RESULT_SUCCESS = 0x00;
const RESULT_UNLIKELY_ERROR = 0x0e;

function send(m: object): void {
  process.send?.(m);
}

/** 128-bit UUID as bleno writes it (no dashes). */
function bare(uuid: string): string {
  return uuid.replace(/-/g, '');
}

/** Flags, the service UUID (128-bit, little-endian) and the OTI manufacturer data: docs/PROTOCOL.md §BLE, Advertisement. */
function advertisingData(pending: boolean): Buffer {
  const uuid = Buffer.from(bare(SERVICE_UUID), 'hex').reverse();
  const mfr = Buffer.from(encodeAdvertisement(pending));
  return Buffer.concat([Buffer.of(2, 0x01, 0x06), Buffer.of(17, 0x07), uuid, Buffer.of(mfr.length + 1, 0xff), mfr]);
}

/** The scan response: the lock's id as its Complete Local Name. */
function scanResponse(id: string): Buffer {
  const name = Buffer.from(id.slice(0, 29), 'utf8');
  return Buffer.concat([Buffer.of(name.length + 1, 0x09), name]);
}

/** One connection's indications, each sent after the previous one was confirmed. */
class Indications {
  private readonly queue: Buffer[] = [];
  private waiting = false;

  constructor(
    private readonly update: Send,
    private readonly max: number,
  ) {}

  message(m: Uint8Array): void {
    for (const f of fragment(m, this.max)) this.queue.push(Buffer.from(f));
    this.next();
  }

  confirmed(): void {
    this.waiting = false;
    this.next();
  }

  private next(): void {
    const f = this.queue.shift();
    if (this.waiting || f === undefined) {
      if (f !== undefined) this.queue.unshift(f);
      return;
    }
    this.waiting = true;
    this.update(f);
  }
}

function main(): void {
  const [port, id, seedHex] = process.argv.slice(2);
  if (port === undefined || id === undefined || seedHex === undefined) throw new Error('usage: ble-lock-child <pty path> <lock id> <seed hex>');
  setTimeout(() => process.exit(3), Number(process.env['OTI_BLE_CHILD_MAX_MS'] ?? 120_000)).unref();
  process.on('disconnect', () => process.exit(0));

  const require = createRequire(import.meta.url);
  const { withBindings } = require('@stoprocent/bleno') as { withBindings: (type: string, o: object) => Bleno };
  const bleno = withBindings('hci', { hciDriver: 'uart', bindParams: { uart: { port, baudRate: 1000000 } } });
  const lock = new SimLock({ id, seed: Buffer.from(seedHex, 'hex'), resendMs: 500 });
  let reported = '';
  const state = (): void => {
    const now = `${lock.pending}/${lock.sent}`;
    if (now === reported) return;
    reported = now;
    send({ t: 'state', pending: lock.pending, sent: lock.sent });
  };
  lock.on('ack', (ctr, entry) => {
    send({ t: 'ack', ctr, entry: Buffer.from(entry).toString('hex') });
    state();
  });
  lock.on('nack', (ctr, code, retry) => {
    send({ t: 'nack', ctr, code, retry });
    state();
  });
  setInterval(state, 10).unref();

  let indications: Indications | undefined;
  let epoch = 0;
  const reassembler = new Reassembler(MESSAGE_MAX_BYTES);
  let advertised: boolean | undefined;
  let connected = false;

  const advertise = (force = false): void => {
    const pending = lock.pending > 0;
    if (connected || (!force && advertised === pending)) return;
    advertised = pending;
    bleno.startAdvertisingWithEIRData(advertisingData(pending), scanResponse(id), (e) => e && fail(e));
  };

  const info = new bleno.Characteristic({
    uuid: bare(INFO_CHAR_UUID),
    properties: ['read'],
    onReadRequest: (_c: unknown, offset: number, cb: (r: number, d?: Buffer) => void) => cb(RESULT_SUCCESS, Buffer.from(encodeMessage({ t: 'info', info: lock.info() })).subarray(offset)),
  });
  const events = new bleno.Characteristic({
    uuid: bare(EVENTS_CHAR_UUID),
    properties: ['indicate'],
    onSubscribe: (_c: unknown, max: number, update: Send) => {
      const mine = ++epoch;
      indications = new Indications(update, max);
      lock.connect((m) => mine === epoch && indications?.message(m), { announceInfo: false });
    },
    onUnsubscribe: () => {
      epoch++;
      lock.disconnect();
    },
    // After bleno's confirmation handler has returned: it emits 'indicate' and only then forgets
    // the attribute it indicated (@stoprocent/bleno 0.12.4 lib/hci-socket/gatt.js
    // handleConfirmation), so an indication sent from within the event would have its own
    // confirmation ignored, and the queue would wait for it forever.
    onIndicate: () => {
      const current = indications;
      setImmediate(() => current?.confirmed());
    },
  });
  const ack = new bleno.Characteristic({
    uuid: bare(ACK_CHAR_UUID),
    properties: ['write'],
    onWriteRequest: (_c: unknown, data: Buffer, _offset: number, _noResponse: boolean, cb: (r: number) => void) => {
      const r = reassembler.push(new Uint8Array(data));
      if (r !== undefined && r.ok) lock.receive(r.message);
      cb(r === undefined || r.ok ? RESULT_SUCCESS : RESULT_UNLIKELY_ERROR);
    },
  });

  bleno.on('stateChange', (state) => {
    if (state !== 'poweredOn') return;
    bleno.setServices([new bleno.PrimaryService({ uuid: bare(SERVICE_UUID), characteristics: [info, events, ack] })], (e) => {
      if (e) return fail(e);
      advertise(true);
      setInterval(() => advertise(), 20);
      send({ t: 'ready' });
    });
  });
  bleno.on('accept', () => {
    connected = true;
    send({ t: 'link', up: true });
  });
  bleno.on('disconnect', () => {
    connected = false;
    epoch++;
    indications = undefined;
    reassembler.reset();
    lock.disconnect();
    send({ t: 'link', up: false });
    advertise(true);
  });
  process.on('message', (m: { t: string; n?: number; hex?: string }) => {
    if (m.t === 'record') for (let i = 0; i < (m.n ?? 1); i++) lock.record();
    if (m.t === 'disconnect') bleno.disconnect();
    if (m.t === 'raw' && m.hex !== undefined) lock.sendRaw(Buffer.from(m.hex, 'hex'));
    state();
  });
}

function fail(e: unknown): void {
  send({ t: 'fail', message: e instanceof Error ? (e.stack ?? e.message) : String(e) });
  process.exit(2);
}

try {
  main();
} catch (e) {
  fail(e);
}
