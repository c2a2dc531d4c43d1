/**
 * Network: multicast works on this host (mDNS discovery of the site's gateways depends on it),
 * and the MQTT broker port is free or held by an MQTT broker.
 */
import { createSocket } from 'node:dgram';
import { createServer, connect } from 'node:net';
import { randomBytes } from 'node:crypto';
import { result, why, type CheckResult } from './result.js';

export const MDNS_GROUP = '224.0.0.251';
export const MDNS_PORT = 5353;
const WAIT_MS = 3000;

/** A well-formed mDNS query (RFC 6762) for a random name nobody answers: harmless on a LAN. */
function mdnsQuery(label: string): Buffer {
  const header = Buffer.from([0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0]);
  const name = Buffer.concat([...[label, '_oti-doctor', '_udp', 'local'].map((l) => Buffer.concat([Buffer.of(l.length), Buffer.from(l, 'ascii')])), Buffer.of(0)]);
  return Buffer.concat([header, name, Buffer.from([0, 12, 0, 1])]); // PTR, IN
}

export function checkMulticast(): Promise<CheckResult> {
  const label = `t${randomBytes(6).toString('hex')}`;
  const probe = mdnsQuery(label);
  return new Promise((resolve) => {
    const sock = createSocket({ type: 'udp4', reuseAddr: true });
    let settled = false;
    const done = (r: CheckResult): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      sock.close();
      resolve(r);
    };
    const remedy = 'check that the interface has a multicast route (ip route show 224.0.0.0/4) and that the firewall lets UDP 5353 through; otherwise configure discovery.staticPeers';
    const timer = setTimeout(() => done(result('multicast', 'fail', `our own mDNS query to ${MDNS_GROUP}:${MDNS_PORT} did not come back within ${WAIT_MS} ms`, remedy)), WAIT_MS);
    sock.on('error', (e) => done(result('multicast', 'fail', `mDNS socket error: ${why(e)}`, remedy)));
    sock.on('message', (m) => {
      if (m.equals(probe)) done(result('multicast', 'pass', `joined ${MDNS_GROUP}:${MDNS_PORT} and received our own query`));
    });
    sock.bind(MDNS_PORT, () => {
      try {
        sock.addMembership(MDNS_GROUP);
        sock.setMulticastLoopback(true);
        sock.setMulticastTTL(255);
      } catch (e) {
        done(result('multicast', 'fail', `cannot join ${MDNS_GROUP}: ${why(e)}`, remedy));
        return;
      }
      sock.send(probe, MDNS_PORT, MDNS_GROUP, (e) => {
        if (e !== null && e !== undefined) done(result('multicast', 'fail', `cannot send to ${MDNS_GROUP}: ${why(e)}`, remedy));
      });
    });
  });
}

/** MQTT 3.1.1 CONNECT with a random client id and clean session (§3.1). */
function mqttConnect(): Buffer {
  const id = Buffer.from(`oti-doctor-${randomBytes(4).toString('hex')}`);
  const vh = Buffer.from([0, 4, 0x4d, 0x51, 0x54, 0x54, 4, 0x02, 0, 10]);
  const payload = Buffer.concat([Buffer.from([id.length >> 8, id.length & 0xff]), id]);
  return Buffer.concat([Buffer.from([0x10, vh.length + payload.length]), vh, payload]);
}

export function checkBrokerPort(host: string, port: number): Promise<CheckResult> {
  const name = `broker port ${port}`;
  return new Promise((resolve) => {
    const srv = createServer();
    srv.once('error', (e: NodeJS.ErrnoException) => {
      if (e.code !== 'EADDRINUSE') {
        resolve(result(name, 'fail', `cannot listen on ${host}:${port}: ${why(e)}`, port < 1024 ? 'ports below 1024 need CAP_NET_BIND_SERVICE' : 'check broker.host in the configuration'));
        return;
      }
      // Something listens: is it an MQTT broker (the gateway's own, when it runs)?
      const sock = connect({ host: host === '0.0.0.0' ? '127.0.0.1' : host, port });
      const timer = setTimeout(() => finish(false), WAIT_MS);
      const finish = (mqtt: boolean): void => {
        clearTimeout(timer);
        sock.destroy();
        resolve(
          mqtt
            ? result(name, 'pass', `in use by an MQTT broker (the gateway’s own when it is running)`)
            : result(name, 'fail', `in use by something that does not speak MQTT`, `find it with ss -ltnp 'sport = :${port}' and stop it, or set broker.port`),
        );
      };
      sock.once('connect', () => sock.write(mqttConnect()));
      sock.once('data', (d) => finish(d[0] === 0x20)); // CONNACK, whatever its return code
      sock.once('error', () => finish(false));
    });
    srv.listen(port, host, () => srv.close(() => resolve(result(name, 'pass', `${host}:${port} is free for the embedded broker`))));
  });
}
