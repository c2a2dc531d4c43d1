/**
 * Deterministic generator of the lock protocol test vectors (test/vectors/lock-protocol.json):
 * one encoded message of each type, a serial frame, the fragments of a message at ATT MTU 23,
 * and invalid inputs with the code a receiver must reject them with. Keys come from fixed seeds,
 * clocks are fixed and Ed25519 is deterministic, so the output is byte-identical on every run;
 * test/unit/protocol.test.ts regenerates it and compares it with the committed file.
 *
 *   node dist/test/support/make-lock-vectors.js           prints the JSON
 *   node dist/test/support/make-lock-vectors.js --write   writes test/vectors/lock-protocol.json
 */
import { writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { keyPairFromSeed, Signer, toHex } from '../../ledger/crypto.js';
import { encode } from '../../ledger/base/cbor.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { coseSign1 } from '../../ledger/cose.js';
import { encodeLockEvent } from '../../ledger/lockevent.js';
import { decodeLockMessage, decodeMessage, encodeAdvertisement, encodeMessage, eventHash, layoutEventMessage, MESSAGE_MAX_BYTES, PROTOCOL_VERSIONS, readUnacceptableEvent, type MessageInput } from '../../drivers/protocol.js';
import { ackFor, nackFor, receivedEvent, unacceptableEvent, type ReceivedEvent } from '../../drivers/driver.js';
import { encodeFrame, fragment, FrameDecoder, Reassembler } from '../../drivers/framing.js';
import { nonProfileEvents } from './nonprofile.js';

/** 2023-11-14T22:13:20Z in ms since 1970, as in test/support/make-vectors.ts. */
const T0 = 1_700_000_000_000;
const hex = toHex;
const unhex = (s: string): Uint8Array => Uint8Array.from(Buffer.from(s, 'hex'));

export function makeLockVectors(): Record<string, unknown> {
  const lockKey = keyPairFromSeed(new Uint8Array(32).fill(0x4c));
  const signer = new Signer(lockKey.seed);
  const payload = encodeLockEvent({ lock: 'front-door', ctr: 7, time: T0 + 7_000, type: 'unlocked', cred: Uint8Array.of(0xca, 0xfe, 0x00, 0x01) });
  const bare = encodeLockEvent({ lock: 'back-door', ctr: 3, time: T0 + 3_000, type: 'door-ajar' });
  const inputs: Record<string, MessageInput> = {
    info: { t: 'info', info: { lock: 'front-door', fw: '1.4.2', key: lockKey.publicKey } },
    infoUnsigned: { t: 'info', info: { lock: 'back-door', fw: '0.9' } },
    event: { t: 'event', oldest: 5, cose: coseSign1(signer, payload) },
    eventUnsigned: { t: 'event', oldest: 3, event: bare },
    hello: { t: 'hello', gw: 'gw-1', window: 8 },
    ack: { t: 'ack', lock: 'front-door', ctr: 7, entry: new Uint8Array(32).fill(0xe7) },
    nack: { t: 'nack', lock: 'front-door', ctr: 7, code: 'ERR_OUT_OF_ORDER', retry: true },
  };
  // Version 2: the lock announces it; hello answers in it; acks and nacks carry `ev`.
  const infoV2 = { v: 2, lock: 'front-door', fw: '2.0.0', key: lockKey.publicKey };
  const eventMessage = encodeMessage(inputs['event']!);
  const m = decodeLockMessage(eventMessage);
  if (m.t !== 'event') throw new Error('vector self-check failed: event');
  const received = receivedEvent(m, { driver: 'vectors', link: 'vectors' }, infoV2, T0);
  inputs['infoV2'] = { t: 'info', info: infoV2 };
  inputs['helloV2'] = { t: 'hello', v: 2, gw: 'gw-1', window: 8 };
  inputs['ackV2'] = ackFor(received, new Uint8Array(32).fill(0xe7));
  inputs['nackV2'] = nackFor(received, 'ERR_OUT_OF_ORDER', true);
  inputs['refuse'] = { t: 'refuse', code: 'ERR_PROTOCOL_VERSION', retry: false, versions: PROTOCOL_VERSIONS };
  const messages = Object.fromEntries(Object.entries(inputs).map(([k, m]) => [k, hex(encodeMessage(m))]));
  const event = unhex(messages['event'] as string);
  const hello = unhex(messages['hello'] as string);

  const invalidMessages = [
    ['unknown type', { t: 'bye' }],
    ['extra field', { t: 'hello', v: 1, gw: 'gw-1', window: 8, x: 0 }],
    ['missing field', { t: 'ack', lock: 'front-door', ctr: 7 }],
    ['window 0', { t: 'hello', v: 1, gw: 'gw-1', window: 0 }],
    ['retry as an integer', { t: 'nack', lock: 'front-door', ctr: 7, code: 'ERR_BUSY', retry: 1 }],
    ['oldest after ctr', { t: 'event', oldest: 4, event: bare }],
    ['oldest 0', { t: 'event', oldest: 0, event: bare }],
    ['both cose and event', { t: 'event', oldest: 3, cose: unhex('00'), event: bare }],
    ['unknown version', { t: 'hello', v: 3, gw: 'gw-1', window: 8 }],
    ['info of an unknown version', { t: 'info', v: 3, fw: '3.0', lock: 'front-door' }],
    ['ev of 31 bytes', { t: 'ack', ev: new Uint8Array(31), ctr: 7, lock: 'front-door', entry: new Uint8Array(32) }],
    ['refuse without versions', { t: 'refuse', code: 'ERR_LOCK_KEY', retry: true, versions: new Array<number>() }],
  ] as const;
  const invalid = invalidMessages.map(([description, v]) => rejection(description, encode(v), (b) => decodeMessage(b)));
  // A map head with a 1-byte length argument for 4 pairs is not the shortest form.
  invalid.push(rejection('non-shortest map head', Uint8Array.of(0xb8, 4, ...hello.subarray(1)), (b) => decodeMessage(b)));

  const frame = encodeFrame(hello);
  const badCrc = Uint8Array.from(frame);
  badCrc[frame.length - 2] = (badCrc[frame.length - 2] as number) ^ 0x80;
  const frameInvalid = [
    frameRejection('CRC mismatch (one bit of the CRC flipped)', badCrc),
    frameRejection('COBS group runs past the delimiter', Uint8Array.of(0x08, 0x01, 0x02, 0x00)),
    frameRejection('too short to hold a CRC', Uint8Array.of(0x04, 0x01, 0x02, 0x03, 0x00)),
  ];
  const frags = fragment(event, 20);
  const fragmentInvalid = [
    fragmentRejection('continuation without a first fragment', [frags[1] as Uint8Array]),
    fragmentRejection('wrong sequence number', [frags[0] as Uint8Array, frags[2] as Uint8Array]),
    fragmentRejection('announced length 0', [Uint8Array.of(0xc0, 0x00, 0x00, 0xa0)]),
    fragmentRejection('last fragment short of the announced length', [Uint8Array.of(0xc0, 0x00, 0x02, 0xa0)]),
  ];
  return {
    description: 'OTI lock protocol vectors (docs/PROTOCOL.md §Lock protocol); generated by test/support/make-lock-vectors.ts',
    lockKey: { seed: hex(lockKey.seed), publicKey: hex(lockKey.publicKey) },
    eventPayload: hex(payload),
    messages,
    advertisement: { pending: hex(encodeAdvertisement(true)), idle: hex(encodeAdvertisement(false)) },
    serialFrame: { body: messages['hello'], frame: hex(frame), leading: hex(encodeFrame(hello, true)) },
    fragmentsMtu23: { message: messages['event'], maxFragment: 20, fragments: frags.map(hex) },
    invalid: { messages: invalid, frames: frameInvalid, fragments: fragmentInvalid },
    refusals: refusals(signer, received),
  };
}

/**
 * The gateway's answers to events and infos it refuses (docs/PROTOCOL.md §Flow), to a lock that
 * speaks version 2, made by the functions the drivers use: each with its code and retry, and
 * for an event the SHA-256 of its payload that the answer's `ev` carries.
 */
function refusals(signer: Signer, received: ReceivedEvent): Record<string, unknown> {
  const payload = received.payload as { cose: Uint8Array };
  // An event with an `ext` of 1,100 bytes (over 1,024): never acceptable, still naming lock and counter.
  const tooBig = encode({ v: 1, ctr: 8, ext: { pad: new Uint8Array(1100) }, lock: 'front-door', time: T0 + 8_000, type: 'unlocked' });
  const invalidMessage = layoutEventMessage(coseSign1(signer, tooBig), true, 8);
  const nack = (ev: ReceivedEvent, code: string, retry: boolean): Record<string, unknown> => ({ code, retry, ev: hex(eventHash('cose' in ev.payload ? ev.payload.cose : ev.payload.event)), answer: hex(encodeMessage(nackFor(ev, code, retry))) });
  /** An event message the gateway refuses for good: the message, the strict decoder's code, and the nack. */
  const neverAcceptable = (description: string, message: Uint8Array): Record<string, unknown> => {
    let error: unknown;
    try {
      decodeMessage(message);
    } catch (e) {
      error = e;
    }
    const u = readUnacceptableEvent(message, error);
    if (!isOtiError(error) || u === undefined) throw new Error(`vector self-check failed: ${description} was accepted or cannot be named`);
    return { description, message: hex(message), decoderError: error.code, ...nack(unacceptableEvent(u, received.from, received.info, T0), 'ERR_EVENT_INVALID', false) };
  };
  // Correctly signed events outside the CBOR profile, as other firmware writes them: named by the lenient reading.
  const names = ['eventFixedWidthCtr', 'eventTextSortedKeys', 'eventFloatExt', 'eventDeepExt', 'eventTaggedCose'];
  const nonProfile = Object.fromEntries(nonProfileEvents(signer, 'front-door', 8, T0 + 8_000).map((e, i) => [names[i], neverAcceptable(`an event with ${e.name}: refused for good`, layoutEventMessage(e.cose, true, 8))]));
  const refuse = (code: string, retry: boolean): Record<string, unknown> => ({ code, retry, answer: hex(encodeMessage({ t: 'refuse', code, retry, versions: PROTOCOL_VERSIONS })) });
  return {
    eventInvalid: neverAcceptable('an event whose ext is 1,100 bytes: refused for good', invalidMessage),
    ...nonProfile,
    revoked: { description: 'an event of a revoked lock', ...nack(received, 'ERR_LOCK_REVOKED', false) },
    keyMismatchEvent: { description: 'an event signed with the key the info announced, not the enrolled one', ...nack(received, 'ERR_LOCK_KEY', true) },
    window: { description: 'an event beyond the window', ...nack(received, 'ERR_WINDOW', true) },
    busy: { description: 'an event not durable within the answer deadline', ...nack(received, 'ERR_BUSY', true) },
    signature: { description: 'an event whose signature does not verify', ...nack(received, 'ERR_LOCK_SIGNATURE', false) },
    ackOfEvent: { description: 'the ack of messages.event to a version 2 lock', ev: hex(eventHash(payload.cose)), answer: hex(encodeMessage(ackFor(received, new Uint8Array(32).fill(0xe7)))) },
    infoVersion: { description: 'an info of a version the gateway does not speak', ...refuse('ERR_PROTOCOL_VERSION', false) },
    infoUnknown: { description: 'an info of a lock that is not enrolled', ...refuse('ERR_LOCK_UNKNOWN', true) },
    infoRevoked: { description: 'an info of a revoked lock', ...refuse('ERR_LOCK_REVOKED', false) },
    infoKey: { description: 'an info announcing another key than the enrolled one', ...refuse('ERR_LOCK_KEY', true) },
  };
}

function rejection(description: string, input: Uint8Array, decode: (b: Uint8Array) => unknown): { description: string; input: string; error: string } {
  try {
    decode(input);
  } catch (e) {
    if (isOtiError(e)) return { description, input: hex(input), error: e.code };
    throw e;
  }
  throw new Error(`vector self-check failed: ${description} was accepted`);
}

function frameRejection(description: string, input: Uint8Array): { description: string; input: string; error: string } {
  const [r] = new FrameDecoder(MESSAGE_MAX_BYTES).push(input);
  if (r === undefined || r.ok) throw new Error(`vector self-check failed: ${description} was accepted`);
  return { description, input: hex(input), error: r.code };
}

function fragmentRejection(description: string, fragments: readonly Uint8Array[]): { description: string; fragments: string[]; error: string } {
  const ra = new Reassembler(MESSAGE_MAX_BYTES);
  const r = fragments.map((f) => ra.push(f)).at(-1);
  if (r === undefined || r.ok) throw new Error(`vector self-check failed: ${description} was accepted`);
  return { description, fragments: fragments.map(hex), error: r.code };
}

export function lockVectorsJson(v: Record<string, unknown>): string {
  return `${JSON.stringify(v, null, 2)}\n`;
}

export const LOCK_VECTORS_URL = new URL('../../../test/vectors/lock-protocol.json', import.meta.url);

if (process.argv[1] !== undefined && fileURLToPath(import.meta.url) === process.argv[1]) {
  const text = lockVectorsJson(makeLockVectors());
  if (process.argv.includes('--write')) {
    await writeFile(LOCK_VECTORS_URL, text, 'utf8');
    console.log(`wrote ${fileURLToPath(LOCK_VECTORS_URL)} (${text.length} bytes)`);
  } else {
    process.stdout.write(text);
  }
}
