/**
 * A failed-login flood for bench:ingest, in a child process of its own (at nice 19) so that its
 * sockets do not slow down the benchmark's simulated locks: `clients` loops, each sending an MQTT CONNECT
 * with a wrong password for `username` and, once answered, the next one, from `addresses`
 * loopback source addresses (127.0.2.1, 127.0.2.2, …) so that per-address limits see a spread
 * attack. The parent sends 'stop'; the child answers with the CONNACK codes it got and exits.
 *
 * Run as a child: node dist/bench/login-flood.js <port> <username> <clients> <addresses>
 */
import { fork } from 'node:child_process';
import { setPriority } from 'node:os';
import { fileURLToPath } from 'node:url';
import { connackFrom } from '../test/support/mqtt-connect.js';

export interface LoginFlood {
  /** Stops the loops and resolves with the answers by CONNACK code (-1: no answer). */
  stop(): Promise<Record<number, number>>;
}

/** Starts the flood in a child process. */
export function floodLogins(port: number, username: string, clients: number, addresses: number): LoginFlood {
  const child = fork(fileURLToPath(import.meta.url), [String(port), username, String(clients), String(addresses)], { stdio: 'inherit' });
  // At the lowest priority: on a real site the attacker's CPU is on another machine; what is
  // measured is the gateway's cost of answering, not the two fighting over this machine's cores.
  if (child.pid !== undefined) setPriority(child.pid, 19);
  const answers = new Promise<Record<number, number>>((resolve, reject) => {
    child.once('message', (m) => resolve(m as Record<number, number>));
    child.once('exit', (code) => reject(new Error(`the login flood exited with ${code} before answering`)));
  });
  return {
    stop: async () => {
      child.send('stop');
      return answers;
    },
  };
}

async function runChild(port: number, username: string, clients: number, addresses: number): Promise<void> {
  const answers: Record<number, number> = {};
  let running = true;
  process.once('message', () => (running = false));
  const loop = async (i: number): Promise<void> => {
    const from = `127.0.2.${(i % addresses) + 1}`;
    while (running) {
      const code = await connackFrom(port, from, username, `wrong-${i}`, 10_000).catch(() => -1);
      answers[code] = (answers[code] ?? 0) + 1;
    }
  };
  await Promise.all(Array.from({ length: clients }, (_, i) => loop(i)));
  process.send?.(answers, () => process.disconnect());
}

if (process.argv[1] === fileURLToPath(import.meta.url) && process.send !== undefined) {
  const [port, username, clients, addresses] = process.argv.slice(2);
  await runChild(Number(port), username ?? '', Number(clients), Number(addresses));
}
