/**
 * Network namespaces for tests that need a real network between gateways: n namespaces, each
 * with one veth interface `eth0` at 10.77.0.(i+1)/24, their other ends on a bridge `br0` in a
 * hub namespace of their own, so nothing in the machine's own network is touched.
 *
 *   ns a (eth0 10.77.0.1) ──veth── p0 ┐
 *   ns b (eth0 10.77.0.2) ──veth── p1 ├─ br0 in the hub namespace
 *   ns c (eth0 10.77.0.3) ──veth── p2 ┘
 *
 * Multicast works across the bridge (snooping is off, so every group is flooded), and each
 * namespace routes 224.0.0.0/4 out of eth0, since it has no default route. cut(i) takes p<i>
 * down (eth0 in namespace i loses its carrier), restore(i) brings it back.
 *
 * Names are `oti-<pid>-<k>-<a|b|c…|hub>`, unique per process and topology; namespaces left by
 * a process that no longer runs are removed when the next topology is made. Needs root (or
 * CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2: netnsUnavailable() says why not, for a skip.
 *
 * Reuse: exec(i, process.execPath, ['dist/gateway/main.js', '--config', file]) starts a full
 * gateway in namespace i; its broker is reachable from the others at ips[i].
 */
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';
import { promisify } from 'node:util';

const run = promisify(execFile);
const PREFIX = 'oti-';
const SUBNET = '10.77.0';
let topologies = 0;

export interface Topology {
  /** The namespace of each gateway, index 0..n-1. */
  readonly namespaces: readonly string[];
  /** The address of eth0 in each namespace. */
  readonly ips: readonly string[];
  /** The interface name inside every namespace. */
  readonly device: string;
  /** Spawns `cmd args` inside namespace i (ip netns exec); the process is killed by destroy(). */
  exec(i: number, cmd: string, args: readonly string[], opts?: SpawnOptions): ChildProcess;
  /** Takes namespace i's link to the bridge down. */
  cut(i: number): Promise<void>;
  restore(i: number): Promise<void>;
  /** Kills what exec started and deletes every namespace (and with them the links). Safe to call twice. */
  destroy(): Promise<void>;
}

async function ip(...args: string[]): Promise<string> {
  const { stdout } = await run('ip', args);
  return stdout;
}

/** Why namespaces cannot be made here, or undefined when they can (it makes and deletes a probe). */
export async function netnsUnavailable(): Promise<string | undefined> {
  try {
    await ip('-V');
  } catch {
    return 'iproute2 (the ip command) is not installed';
  }
  const probe = `${PREFIX}${process.pid}-probe`;
  try {
    await ip('netns', 'add', probe);
  } catch (e) {
    return `cannot create a network namespace (needs root or CAP_NET_ADMIN + CAP_SYS_ADMIN): ${(e as Error).message.trim()}`;
  }
  await ip('netns', 'del', probe).catch(() => undefined);
  return undefined;
}

/** Deletes namespaces named by this harness for processes that have exited. */
export async function removeStaleNamespaces(): Promise<void> {
  const list = await ip('netns', 'list');
  for (const line of list.split('\n')) {
    const name = line.split(' ')[0] ?? '';
    const m = /^oti-(\d+)-/.exec(name);
    if (m === null || alive(Number(m[1]))) continue;
    await ip('netns', 'del', name).catch(() => undefined);
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Builds n namespaces on one bridge. On failure, whatever was made is deleted again. */
export async function createTopology(n: number): Promise<Topology> {
  if (!Number.isInteger(n) || n < 1 || n > 26) throw new RangeError('a topology has 1..26 namespaces');
  await removeStaleNamespaces();
  const base = `${PREFIX}${process.pid}-${++topologies}`;
  const hub = `${base}-hub`;
  const namespaces = Array.from({ length: n }, (_, i) => `${base}-${String.fromCharCode(97 + i)}`);
  const ips = namespaces.map((_, i) => `${SUBNET}.${i + 1}`);
  const device = 'eth0';
  const children = new Set<ChildProcess>();
  const made: string[] = [];
  let destroyed = false;

  const destroy = async (): Promise<void> => {
    if (destroyed) return;
    destroyed = true;
    await Promise.all(
      [...children].map(async (c) => {
        if (c.exitCode !== null || c.signalCode !== null) return;
        const exited = new Promise((resolve) => c.once('exit', resolve));
        c.kill('SIGKILL');
        await exited;
      }),
    );
    for (const ns of made.reverse()) await ip('netns', 'del', ns).catch(() => undefined);
  };

  try {
    await ip('netns', 'add', hub);
    made.push(hub);
    await ip('-n', hub, 'link', 'set', 'lo', 'up');
    await ip('-n', hub, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0');
    await ip('-n', hub, 'link', 'set', 'br0', 'up');
    for (const [i, ns] of namespaces.entries()) {
      await ip('netns', 'add', ns);
      made.push(ns);
      await ip('-n', ns, 'link', 'set', 'lo', 'up');
      await ip('link', 'add', device, 'netns', ns, 'type', 'veth', 'peer', 'name', `p${i}`, 'netns', hub);
      await ip('-n', hub, 'link', 'set', `p${i}`, 'master', 'br0');
      await ip('-n', hub, 'link', 'set', `p${i}`, 'up');
      await ip('-n', ns, 'addr', 'add', `${ips[i]}/24`, 'dev', device);
      await ip('-n', ns, 'link', 'set', device, 'multicast', 'on');
      await ip('-n', ns, 'link', 'set', device, 'up');
      await ip('-n', ns, 'route', 'add', '224.0.0.0/4', 'dev', device);
    }
  } catch (e) {
    await destroy();
    throw e;
  }

  const check = (i: number): string => {
    const ns = namespaces[i];
    if (ns === undefined) throw new RangeError(`no namespace ${i}`);
    return ns;
  };
  /** The bridge port of namespace i's link. */
  const port = (i: number): string => (check(i), `p${i}`);
  return {
    namespaces,
    ips,
    device,
    exec(i, cmd, args, opts = {}) {
      const c = spawn('ip', ['netns', 'exec', check(i), cmd, ...args], opts);
      children.add(c);
      c.once('exit', () => children.delete(c));
      return c;
    },
    async cut(i) {
      await ip('-n', hub, 'link', 'set', port(i), 'down');
    },
    async restore(i) {
      await ip('-n', hub, 'link', 'set', port(i), 'up');
    },
    destroy,
  };
}
