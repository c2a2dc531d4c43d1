/**
 * The serial port's reads and writes on Linux without a trip through libuv's thread pool and
 * without an error object per empty read.
 *
 * serialport's Linux binding (@serialport/bindings-cpp unix-read.js) reads a non-blocking fd
 * with `fs.read` on libuv's pool first and waits for it to be readable only when that read fails
 * with EAGAIN. A line carrying a frame every few milliseconds is empty at almost every read, so
 * each chunk cost two pool round trips (beside LevelDB's writes on the same four threads) and a
 * thrown EAGAIN error with its stack (bench:ingest, DECISIONS.md §Performance of the real gateway
 * process). Here a read waits for the binding's own poller (epoll, level-triggered: it reports
 * at once when bytes are already there) and then reads what is there with `readSync`, which on a
 * readable non-blocking fd returns at once. Writes go out with `writeSync` and wait for the
 * poller only when the kernel's buffer is full.
 *
 * The contract of serialport's BindingPortInterface is kept: a read resolves with at least one
 * byte; a read or write in progress when the port closes fails with an error whose `canceled`
 * is true (the poller's own cancel error); any other failure is the port's loss, with
 * `disconnect` set for the codes the stock binding sets it for. Elsewhere than Linux, or when the
 * binding is not the one this was written against, the stock binding is used unchanged.
 */
import { readSync, writeSync } from 'node:fs';

/** The parts of @serialport/bindings-cpp's LinuxPortBinding this relies on. */
interface LinuxPort {
  readonly isOpen: boolean;
  readonly fd: number | null;
  readonly poller: { once(event: 'readable' | 'writable', cb: (err?: Error | null) => void): unknown };
  /** The write in progress, which the binding's drain() waits for. */
  writeOperation: Promise<void> | null;
  read(buffer: Buffer, offset: number, length: number): Promise<{ buffer: Buffer; bytesRead: number }>;
  write(buffer: Buffer): Promise<void>;
}

interface Binding {
  open(options: never): Promise<unknown>;
  list(): Promise<unknown[]>;
}

/** `binding` (serialport's detected one) with its ports' reads and writes replaced on Linux. */
export function pollingBinding<B extends Binding>(binding: B): B {
  if (process.platform !== 'linux') return binding;
  return {
    ...binding,
    list: () => binding.list(),
    open: async (options: never) => {
      const port = await binding.open(options);
      if (isLinuxPort(port)) {
        port.read = (buffer, offset, length) => readWhenReadable(port, buffer, offset, length);
        port.write = (buffer) => {
          const op = writeNow(port, buffer).then(() => {
            port.writeOperation = null;
          });
          port.writeOperation = op;
          return op;
        };
      }
      return port;
    },
  } as B;
}

function isLinuxPort(p: unknown): p is LinuxPort {
  const x = p as Partial<LinuxPort> | null;
  return typeof x === 'object' && x !== null && typeof x.fd === 'number' && typeof x.poller?.once === 'function' && typeof x.read === 'function' && typeof x.write === 'function' && 'writeOperation' in x;
}

function wait(port: LinuxPort, what: 'readable' | 'writable'): Promise<void> {
  return new Promise((resolve, reject) => port.poller.once(what, (err) => (err ? reject(err) : resolve())));
}

function notOpen(): Error {
  return Object.assign(new Error('Port is not open'), { canceled: true });
}

/** errno codes after which the port is gone, as the stock binding marks them. */
function lost(e: unknown): Error {
  const err = e as NodeJS.ErrnoException & { disconnect?: boolean };
  if (err.code === 'EBADF' || err.code === 'ENXIO' || err.code === 'UNKNOWN' || err.errno === -1) err.disconnect = true;
  return err;
}

function retry(e: unknown): boolean {
  const code = (e as NodeJS.ErrnoException).code;
  return code === 'EAGAIN' || code === 'EWOULDBLOCK' || code === 'EINTR';
}

async function readWhenReadable(port: LinuxPort, buffer: Buffer, offset: number, length: number): Promise<{ buffer: Buffer; bytesRead: number }> {
  for (;;) {
    if (!port.isOpen || port.fd === null) throw notOpen();
    await wait(port, 'readable');
    if (!port.isOpen || port.fd === null) throw notOpen();
    let n: number;
    try {
      n = readSync(port.fd, buffer, offset, length, null);
    } catch (e) {
      // A readiness that another read took first, or a signal: wait again (rare).
      if (retry(e)) continue;
      throw lost(e);
    }
    if (n > 0) return { buffer, bytesRead: n };
  }
}

async function writeNow(port: LinuxPort, buffer: Buffer): Promise<void> {
  let offset = 0;
  while (offset < buffer.length) {
    if (!port.isOpen || port.fd === null) throw new Error('Port is not open');
    try {
      offset += writeSync(port.fd, buffer, offset, buffer.length - offset);
      continue;
    } catch (e) {
      if (!retry(e)) throw lost(e);
    }
    await wait(port, 'writable');
  }
}
