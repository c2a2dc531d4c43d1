/**
 * A bare MQTT 3.1.1 login over a raw TCP socket from a chosen local address, for tests and
 * benchmarks that need many logins from many source addresses (Linux routes all of 127.0.0.0/8
 * to the loopback interface) and only want the CONNACK code.
 */
import { connect } from 'node:net';

/** MQTT 3.1.1 §3.1: a CONNECT with user name and password (clean session, keep alive 30 s). */
export function connectPacket(clientId: string, username: string, password: string): Buffer {
  const str = (v: string): Buffer => {
    const b = Buffer.from(v, 'utf8');
    return Buffer.concat([Buffer.from([b.length >> 8, b.length & 0xff]), b]);
  };
  const body = Buffer.concat([str('MQTT'), Buffer.from([4, 0xc2, 0, 30]), str(clientId), str(username), str(password)]);
  const length: number[] = [];
  let n = body.length;
  do {
    length.push((n & 0x7f) | (n > 0x7f ? 0x80 : 0));
    n >>= 7;
  } while (n > 0);
  return Buffer.concat([Buffer.from([0x10, ...length]), body]);
}

/**
 * Sends one CONNECT to 127.0.0.1:`port` from `localAddress`, closes the socket once answered, and
 * resolves with the CONNACK return code (MQTT 3.1.1 §3.2.2.3). Rejects when no CONNACK comes
 * within `timeoutMs` or the socket fails.
 */
export function connackFrom(port: number, localAddress: string, username: string, password: string, timeoutMs = 20_000): Promise<number> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, localAddress }, () => socket.write(connectPacket(`c-${Math.random().toString(36).slice(2)}`, username, password)));
    let got = Buffer.alloc(0);
    const timer = setTimeout(() => socket.destroy(new Error('no CONNACK')), timeoutMs);
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      if (got.length >= 4) {
        clearTimeout(timer);
        socket.destroy();
        resolve(got[3] as number);
      }
    });
    socket.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      reject(new Error('closed before CONNACK'));
    });
  });
}
