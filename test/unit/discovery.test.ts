/**
 * Peer discovery over real multicast on this machine: Discovery instances with the built-in
 * backend on a UDP port of their own per test (so tests and other mDNS users stay apart), a
 * "rogue" multicast-dns socket on the same port that sends crafted announcements, and the
 * announcement codec on its own.
 */
import test, { type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { createSocket } from 'node:dgram';
import { once } from 'node:events';
import makeMdns from 'multicast-dns';
import { generateKeyPair, Signer, toHex, type KeyPair } from '../../ledger/crypto.js';
import { isOtiError } from '../../ledger/base/errors.js';
import { encodeSigned, signStatement, type SignedStatement } from '../../ledger/roster.js';
import { Discovery, type DiscoveryOptions, type MdnsPeer, type Peer, type Rejection } from '../../gateway/discovery/discovery.js';
import { JsMdnsBackend } from '../../gateway/discovery/mdns-js.js';
import { AvahiMdnsBackend } from '../../gateway/discovery/mdns-avahi.js';
import { SERVICE_TYPE, TXT_STRING_MAX_BYTES, decodeAnnouncement, encodeAnnouncement, instanceLabel, verifyAnnouncement, type Announcement } from '../../gateway/discovery/announcement.js';
import { enrollGateway, makeSite, type TestSite } from '../support/site.js';
import { nextEvent } from '../support/wait.js';

const WAIT_MS = 20_000;

async function freeUdpPort(): Promise<number> {
  const s = createSocket('udp4');
  await new Promise<void>((resolve) => s.bind(0, '0.0.0.0', resolve));
  const { port } = s.address();
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

interface Gw {
  readonly id: string;
  readonly key: KeyPair;
  readonly enrolment: SignedStatement;
  readonly d: Discovery;
}

function gateway(t: TestContext, site: TestSite, id: string, mdnsPort: number, extra: Partial<DiscoveryOptions> = {}): Gw {
  const { key, statement } = enrollGateway(site, id);
  const d = new Discovery({ trust: site.trust, gatewayId: id, key, enrolment: statement, brokerPort: 1883, backend: 'js', mdnsPort, announceIntervalMs: 500, ...extra });
  t.after(() => d.stop());
  return { id, key, enrolment: statement, d };
}

const isMdnsPeer = (id: string) => (p: Peer) => p.via === 'mdns' && p.gatewayId === id;

/** A plain multicast-dns socket on the test's port, for sending announcements no Discovery would make. */
async function rogue(t: TestContext, port: number): Promise<{ send(instance: string, txt: Buffer[], ttl?: number): void }> {
  const m = makeMdns({ port, loopback: true, reuseAddr: true });
  await once(m, 'ready');
  t.after(() => new Promise<void>((resolve) => m.destroy(resolve)));
  return {
    send(instance, txt, ttl = 60) {
      m.respond({ answers: [{ name: SERVICE_TYPE, type: 'PTR', ttl, data: `${instance}.${SERVICE_TYPE}` }, { name: `${instance}.${SERVICE_TYPE}`, type: 'TXT', ttl, data: txt }] });
    },
  };
}

function announcement(site: string, id: string, key: KeyPair, enrolment: SignedStatement, extra: Partial<Announcement> = {}): Announcement {
  return { site, gatewayId: id, key: key.publicKey, port: 1883, ts: Date.now(), enrolment: encodeSigned(enrolment), bye: false, ...extra };
}

void test('three gateways on one network find each other by multicast, and not themselves', async (t) => {
  const port = await freeUdpPort();
  const site = makeSite('site-a');
  const gws = ['gw-1', 'gw-2', 'gw-3'].map((id, i) => gateway(t, site, id, port, { brokerPort: 1883 + i }));
  const found = gws.map((g) => {
    const others = gws.filter((o) => o !== g);
    return Promise.all(others.map((o) => nextEvent<MdnsPeer>(g.d, 'peer', `${g.id} to find ${o.id}`, isMdnsPeer(o.id), WAIT_MS)));
  });
  for (const g of gws) await g.d.start();
  const seen = await Promise.all(found);
  for (const [i, g] of gws.entries()) {
    const peers = seen[i]!;
    for (const p of peers) {
      const o = gws.find((x) => x.id === p.gatewayId)!;
      assert.equal(toHex(p.key), toHex(o.key.publicKey));
      assert.equal(p.port, 1883 + gws.indexOf(o));
      assert.ok(p.host.length > 0);
    }
    const listed = g.d.peers().map((p) => p.gatewayId).sort();
    assert.deepEqual(listed, gws.filter((o) => o !== g).map((o) => o.id).sort());
  }
});

void test('a gateway that stops sends a signed goodbye and its peers lose it', async (t) => {
  const port = await freeUdpPort();
  const site = makeSite('site-b');
  const a = gateway(t, site, 'gw-a', port, { announceIntervalMs: 60_000 });
  const b = gateway(t, site, 'gw-b', port, { announceIntervalMs: 60_000 });
  const found = nextEvent(a.d, 'peer', 'gw-a to find gw-b', isMdnsPeer('gw-b'), WAIT_MS);
  await a.d.start();
  await b.d.start();
  await found;
  const lost = nextEvent<Peer>(a.d, 'lost', 'gw-a to lose gw-b', (p) => p.gatewayId === 'gw-b', WAIT_MS);
  await b.d.stop();
  // With 60 s announcements the record TTL is 180 s: only the goodbye can explain a prompt loss.
  await lost;
  assert.deepEqual(a.d.peers(), []);
});

void test('a gateway that vanishes without a goodbye is lost when its records expire, and found again when it returns', async (t) => {
  const port = await freeUdpPort();
  const site = makeSite('site-c');
  const a = gateway(t, site, 'gw-a', port);
  const silent = new (class extends JsMdnsBackend {
    override stop(): Promise<void> {
      return super.stop(); // no goodbye: like a power cut
    }
  })({ port });
  const b = gateway(t, site, 'gw-b', port, { backend: silent });
  await a.d.start();
  const found = nextEvent(a.d, 'peer', 'gw-a to find gw-b', isMdnsPeer('gw-b'), WAIT_MS);
  await b.d.start();
  await found;
  const lost = nextEvent<Peer>(a.d, 'lost', 'gw-a to lose gw-b', (p) => p.gatewayId === 'gw-b', WAIT_MS);
  await b.d.stop();
  await lost;
  const back = gateway(t, site, 'gw-b', port);
  const again = nextEvent(a.d, 'peer', 'gw-a to find gw-b again', isMdnsPeer('gw-b'), WAIT_MS);
  await back.d.start();
  await again;
});

void test('announcements that fail a check are rejected with their reason, and honest discovery carries on', async (t) => {
  const port = await freeUdpPort();
  const site = makeSite('site-d');
  const revokedId = 'gw-revoked';
  const a = gateway(t, site, 'gw-a', port, { isRevoked: (id) => id === revokedId });
  const rejected: Rejection[] = [];
  a.d.on('rejected', (r) => rejected.push(r));
  const peers: Peer[] = [];
  a.d.on('peer', (p) => peers.push(p));
  await a.d.start();
  const r = await rogue(t, port);

  const cases: { name: string; reason: string; txt: () => Buffer[] }[] = [
    {
      name: 'forged-signature',
      reason: 'ERR_DISCOVERY_SIGNATURE',
      txt: () => {
        const g = enrollGateway(site, 'gw-forged');
        const txt = encodeAnnouncement(announcement(site.siteId, 'gw-forged', g.key, g.statement), new Signer(generateKeyPair().seed));
        return txt;
      },
    },
    {
      name: 'unknown-site-key',
      reason: 'ERR_DISCOVERY_ENROLMENT',
      txt: () => {
        const impostor = makeSite(site.siteId); // same site id, another authority key
        const g = enrollGateway(impostor, 'gw-impostor');
        return encodeAnnouncement(announcement(site.siteId, 'gw-impostor', g.key, g.statement), new Signer(g.key.seed));
      },
    },
    {
      name: 'enrolment-for-another-key',
      reason: 'ERR_DISCOVERY_ENROLMENT',
      txt: () => {
        const real = enrollGateway(site, 'gw-stolen');
        const mine = generateKeyPair();
        return encodeAnnouncement(announcement(site.siteId, 'gw-stolen', mine, real.statement), new Signer(mine.seed));
      },
    },
    {
      name: 'enrolment-of-another-gateway',
      reason: 'ERR_DISCOVERY_ENROLMENT',
      txt: () => {
        const g = enrollGateway(site, 'gw-other');
        return encodeAnnouncement(announcement(site.siteId, 'gw-claimed', g.key, g.statement), new Signer(g.key.seed));
      },
    },
    {
      name: 'revoked',
      reason: 'ERR_DISCOVERY_REVOKED',
      txt: () => {
        const g = enrollGateway(site, revokedId);
        return encodeAnnouncement(announcement(site.siteId, revokedId, g.key, g.statement), new Signer(g.key.seed));
      },
    },
    {
      name: 'stale',
      reason: 'ERR_DISCOVERY_STALE',
      txt: () => {
        const g = enrollGateway(site, 'gw-stale');
        return encodeAnnouncement(announcement(site.siteId, 'gw-stale', g.key, g.statement, { ts: Date.now() - 10 * 60_000 }), new Signer(g.key.seed));
      },
    },
    {
      name: 'wrong-site',
      reason: 'ERR_DISCOVERY_SITE',
      txt: () => {
        const other = makeSite('site-other');
        const g = enrollGateway(other, 'gw-elsewhere');
        return encodeAnnouncement(announcement(other.siteId, 'gw-elsewhere', g.key, g.statement), new Signer(g.key.seed));
      },
    },
    {
      name: 'no-signature',
      reason: 'ERR_DISCOVERY_ANNOUNCEMENT',
      txt: () => {
        const g = enrollGateway(site, 'gw-unsigned');
        return encodeAnnouncement(announcement(site.siteId, 'gw-unsigned', g.key, g.statement), new Signer(g.key.seed)).filter((s) => !s.toString().startsWith('sig='));
      },
    },
  ];
  for (const c of cases) {
    const got = nextEvent<Rejection>(a.d, 'rejected', `rejection of ${c.name}`, (x) => x.name === c.name, WAIT_MS);
    r.send(c.name, c.txt());
    const rej = await got;
    assert.equal(rej.reason, c.reason, c.name);
    assert.ok(rej.from.length > 0);
  }
  // An honest gateway is still found, and none of the above ever became a peer.
  const b = gateway(t, site, 'gw-b', port);
  const found = nextEvent(a.d, 'peer', 'gw-a to find gw-b', isMdnsPeer('gw-b'), WAIT_MS);
  await b.d.start();
  await found;
  assert.deepEqual(peers.map((p) => p.gatewayId), ['gw-b']);
  assert.equal(rejected.length, cases.length);
});

void test('a replayed announcement made into a goodbye by its TTL, or an unsigned goodbye, loses no peer', async (t) => {
  const port = await freeUdpPort();
  const site = makeSite('site-e');
  const a = gateway(t, site, 'gw-a', port);
  const b = gateway(t, site, 'gw-b', port);
  await a.d.start();
  const found = nextEvent(a.d, 'peer', 'gw-a to find gw-b', isMdnsPeer('gw-b'), WAIT_MS);
  await b.d.start();
  await found;
  const lost: Peer[] = [];
  a.d.on('lost', (p) => lost.push(p));
  const r = await rogue(t, port);
  // b's own record, signed and fresh, but with TTL 0 and no signed bye.
  const replay = encodeAnnouncement(announcement(site.siteId, 'gw-b', b.key, b.enrolment), new Signer(b.key.seed));
  r.send(b.d.instance, replay, 0);
  // A goodbye signed by another key for b's instance: rejected for its enrolment.
  const other = generateKeyPair();
  const rej = nextEvent<Rejection>(a.d, 'rejected', 'rejection of the forged goodbye', (x) => x.name === b.d.instance, WAIT_MS);
  r.send(b.d.instance, encodeAnnouncement(announcement(site.siteId, 'gw-b', other, b.enrolment, { bye: true }), new Signer(other.seed)), 0);
  assert.equal((await rej).reason, 'ERR_DISCOVERY_ENROLMENT');
  // The rejection was handled after the replay (same sender, same order): b is still a peer.
  assert.deepEqual(lost, []);
  assert.deepEqual(a.d.peers().map((p) => p.gatewayId), ['gw-b']);
});

void test('static peers are reported on start with via "static" and no identity', async (t) => {
  const port = await freeUdpPort();
  const site = makeSite('site-f');
  const a = gateway(t, site, 'gw-a', port, { staticPeers: [{ host: '192.0.2.10', port: 1883 }, { host: 'gw-9.example', port: 8883 }] });
  const seen: Peer[] = [];
  a.d.on('peer', (p) => seen.push(p));
  await a.d.start();
  assert.deepEqual(
    seen.map((p) => [p.via, p.host, p.port, p.gatewayId]),
    [
      ['static', '192.0.2.10', 1883, undefined],
      ['static', 'gw-9.example', 8883, undefined],
    ],
  );
  assert.equal(a.d.peers().length, 2);
});

void test('a Discovery refuses an enrolment that is not its own', () => {
  const site = makeSite();
  const g = enrollGateway(site, 'gw-1');
  const other = enrollGateway(site, 'gw-2');
  assert.throws(
    () => new Discovery({ trust: site.trust, gatewayId: 'gw-1', key: g.key, enrolment: other.statement, brokerPort: 1883, backend: 'js' }),
    (e) => isOtiError(e, 'ERR_ARGUMENT'),
  );
});

void test('the Avahi backend without the mdns package fails with ERR_DRIVER_UNAVAILABLE, and startWithFallback uses the built-in one', async (t) => {
  await assert.rejects(
    new AvahiMdnsBackend({ refreshMs: 1000 }).start({ sighting: () => undefined, gone: () => undefined, warning: () => undefined }),
    (e) => isOtiError(e, 'ERR_DRIVER_UNAVAILABLE'),
  );
  const port = await freeUdpPort();
  const site = makeSite('site-g');
  const g = enrollGateway(site, 'gw-a');
  const fallbacks: string[] = [];
  const d = await Discovery.startWithFallback({ trust: site.trust, gatewayId: 'gw-a', key: g.key, enrolment: g.statement, brokerPort: 1883, backend: 'avahi', mdnsPort: port }, (e) => fallbacks.push(e.code));
  t.after(() => d.stop());
  assert.deepEqual(fallbacks, ['ERR_DRIVER_UNAVAILABLE']);
  const b = gateway(t, site, 'gw-b', port);
  const found = nextEvent(b.d, 'peer', 'gw-b to find gw-a through the fallback backend', isMdnsPeer('gw-a'), WAIT_MS);
  await b.d.start();
  await found;
});

void test('announcement codec: round trip, TXT strings within 255 bytes, enrolment split across strings', () => {
  const site = makeSite('a-site-with-a-rather-long-identifier-to-make-things-bigger');
  const id = 'gateway-with-a-long-name.building-7.floor-3.east-wing-door-12';
  const g = enrollGateway(site, id);
  const a = announcement(site.siteId, id, g.key, g.statement, { port: 65535, ts: 1_700_000_000_123 });
  const txt = encodeAnnouncement(a, new Signer(g.key.seed));
  assert.ok(txt.every((s) => s.length <= TXT_STRING_MAX_BYTES));
  assert.ok(txt.filter((s) => s.toString().startsWith('enr')).length >= 2);
  const back = decodeAnnouncement(txt);
  assert.equal(back.site, a.site);
  assert.equal(back.gatewayId, id);
  assert.equal(toHex(back.key), toHex(a.key));
  assert.equal(back.port, 65535);
  assert.equal(back.ts, a.ts);
  assert.equal(toHex(back.enrolment), toHex(a.enrolment));
  assert.equal(back.bye, false);
  verifyAnnouncement(back, { trust: site.trust, now: a.ts, staleMs: 1000 });
  assert.ok(!instanceLabel(id, g.key.publicKey).includes('.'));
  assert.ok(instanceLabel(id, g.key.publicKey).length <= 63);
});

void test('announcement codec: malformed TXT records are ERR_DISCOVERY_ANNOUNCEMENT; RFC 6763 key rules hold', () => {
  const site = makeSite();
  const g = enrollGateway(site, 'gw-1');
  const good = encodeAnnouncement(announcement(site.siteId, 'gw-1', g.key, g.statement), new Signer(g.key.seed));
  const edit = (key: string, value: string | undefined): Buffer[] =>
    good.flatMap((s) => (s.toString().startsWith(`${key}=`) ? (value === undefined ? [] : [Buffer.from(`${key}=${value}`)]) : [s]));
  const bad: [string, Buffer[]][] = [
    ['v=2', edit('v', '2')],
    ['no key', edit('key', undefined)],
    ['short key', edit('key', 'AAAA')],
    ['non-canonical base64url', edit('key', `${Buffer.from(g.key.publicKey).toString('base64url')}=`)],
    ['port 0', edit('port', '0')],
    ['port 65536', edit('port', '65536')],
    ['port with sign', edit('port', '+1883')],
    ['ts not decimal', edit('ts', '1e12')],
    ['bad site id', edit('site', 'Site!')],
    ['no enr0', edit('enr0', undefined)],
    ['bye=yes', [...good, Buffer.from('bye=yes')]],
    ['too many strings', [...good, ...Array.from({ length: 40 }, (_, i) => Buffer.from(`x${i}=1`))]],
  ];
  for (const [what, txt] of bad) assert.throws(() => decodeAnnouncement(txt), (e) => isOtiError(e, 'ERR_DISCOVERY_ANNOUNCEMENT'), what);
  // Keys are case-insensitive and only the first occurrence counts.
  const upper = good.map((s) => (s.toString().startsWith('gw=') ? Buffer.from(`GW=${s.toString().slice(3)}`) : s));
  assert.equal(decodeAnnouncement([...upper, Buffer.from('gw=someone-else')]).gatewayId, 'gw-1');
  // A key that is not a curve point fails like a bad signature.
  const notAPoint = decodeAnnouncement(edit('key', Buffer.alloc(32, 0xff).toString('base64url')));
  assert.throws(() => verifyAnnouncement(notAPoint, { trust: site.trust, now: notAPoint.ts, staleMs: 1000 }), (e) => isOtiError(e, 'ERR_DISCOVERY_SIGNATURE'));
  // A signature over other bytes: changing any signed field breaks it.
  const moved = decodeAnnouncement(edit('port', '1884'));
  assert.throws(() => verifyAnnouncement(moved, { trust: site.trust, now: moved.ts, staleMs: 1000 }), (e) => isOtiError(e, 'ERR_DISCOVERY_SIGNATURE'));
});

void test('verifyAnnouncement: expired, revocation and non-enrol statements are refused', () => {
  const site = makeSite();
  const key = generateKeyPair();
  const now = 1_800_000_000_000;
  const sign = (s: SignedStatement, extra: Partial<Announcement> = {}): ReturnType<typeof decodeAnnouncement> =>
    decodeAnnouncement(encodeAnnouncement(announcement(site.siteId, 'gw-1', key, s, { ts: now, ...extra }), new Signer(key.seed)));
  const base = { site: site.siteId, role: 'gateway' as const, id: 'gw-1', key: key.publicKey, time: 1 };
  const expired = signStatement(site.site, { ...base, op: 'enroll', expires: now - 1 });
  const revoke = signStatement(site.site, { ...base, op: 'revoke' });
  const lock = signStatement(site.site, { ...base, op: 'enroll', role: 'lock' });
  for (const s of [expired, revoke, lock]) {
    assert.throws(() => verifyAnnouncement(sign(s), { trust: site.trust, now, staleMs: 1000 }), (e) => isOtiError(e, 'ERR_DISCOVERY_ENROLMENT'));
  }
  const valid = signStatement(site.site, { ...base, op: 'enroll', expires: now + 1 });
  verifyAnnouncement(sign(valid), { trust: site.trust, now, staleMs: 1000 });
  // Future timestamps are as stale as past ones.
  assert.throws(() => verifyAnnouncement(sign(valid, { ts: now + 1001 }), { trust: site.trust, now, staleMs: 1000 }), (e) => isOtiError(e, 'ERR_DISCOVERY_STALE'));
  assert.throws(() => verifyAnnouncement(sign(valid), { trust: site.trust, now, staleMs: 1000, isRevoked: (_id, k) => toHex(k) === toHex(key.publicKey) }), (e) => isOtiError(e, 'ERR_DISCOVERY_REVOKED'));
});
