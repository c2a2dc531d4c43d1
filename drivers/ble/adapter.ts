/**
 * The Bluetooth adapter and its scan, as a state machine over noble's events:
 * - Adapter poweredOff (or unauthorized/unsupported) closes every link and opens a blind
 *   interval; poweredOn closes it with a 'blind' notice and resumes scanning.
 * - A scan watchdog restarts a scan that delivered nothing for `watchdogMs` (noble on a
 *   Raspberry Pi can stop delivering silently) or that stopped without being asked to, and
 *   reports the silent time as a blind interval: a scan that stopped is blind from the stop at
 *   once; a scan that merely went quiet only once advertisements come back after the restart,
 *   which shows it had stalled (a quiet site, with no lock in range, is not blind).
 * Every advertisement heard is handed on (`advertised`), to the link pool.
 */
import { SERVICE_UUID } from '../protocol.js';
import type { DriverNotice, DriverState, LinkStatus } from '../driver.js';
import type { NobleLike, NoblePeripheral } from '../noble-types.js';
import { bounded } from '../noble-load.js';
import { STOP_WAIT_MS, messageOf } from './link.js';

const ADAPTER_LINK = 'adapter';

export interface AdapterOptions {
  readonly driver: string;
  readonly noble: NobleLike;
  /** A scan that delivered no advertisement for this long is restarted. */
  readonly watchdogMs: number;
  /** Wait before restarting a scan that stopped on its own, so that a failing scan cannot spin. */
  readonly restartDelayMs: number;
  /** Bound on a scan start. */
  readonly startTimeoutMs: number;
  readonly now: () => number;
  readonly notice: (n: DriverNotice) => void;
  /** The driver's state follows the adapter's. */
  readonly setState: (state: DriverState, reason: string | undefined) => void;
  /** Whether the driver is stopping (then adapter changes are ignored). */
  readonly stopping: () => boolean;
  /** The radio is gone: close every link. */
  readonly lost: (reason: string) => void;
  /** Why the machine has no adapter at all (no Bluetooth in the kernel, no adapter), if it has none. */
  readonly absence?: (() => string | undefined) | undefined;
  readonly advertised: (p: NoblePeripheral) => void;
}

export class Adapter {
  /** noble's adapter state, as last reported. */
  state = 'unknown';
  /** Scans restarted by the watchdog or after a scanStop nobody asked for. */
  restarts = 0;
  private scanWanted = false;
  private stoppingScan = false;
  private restarting = false;
  private lastScanActivity = 0;
  /** Start of the current blind interval while the adapter is not poweredOn. */
  private blindSince: number | undefined;
  /** A watchdog restart whose silence becomes a blind interval if advertisements come back. */
  private stallSince: { since: number; reason: string } | undefined;

  constructor(private readonly o: AdapterOptions) {}

  get poweredOn(): boolean {
    return this.state === 'poweredOn';
  }

  /**
   * Listens to noble and reads its state, which on the real library initialises the bindings (and
   * may throw). The 'stateChange' listener goes first: on the real library it schedules the
   * bindings' initialisation, whose failure arrives as a 'warning'.
   */
  attach(): string {
    const noble = this.o.noble;
    noble.on('stateChange', this.onStateChange);
    noble.on('scanStart', this.onScanStart);
    noble.on('scanStop', this.onScanStop);
    noble.on('discover', this.onDiscover);
    noble.on('warning', this.onWarning);
    return noble.state;
  }

  /** The state read by attach(), when it was known already. */
  begin(state: string): void {
    if (state !== 'unknown') this.onStateChange(state);
  }

  detach(): void {
    const noble = this.o.noble;
    noble.removeListener('stateChange', this.onStateChange);
    noble.removeListener('scanStart', this.onScanStart);
    noble.removeListener('scanStop', this.onScanStop);
    noble.removeListener('discover', this.onDiscover);
    noble.removeListener('warning', this.onWarning);
  }

  /** The watchdog, run by the driver's housekeeping tick. */
  watch(t: number): void {
    if (this.scanWanted && !this.restarting && t - this.lastScanActivity >= this.o.watchdogMs) {
      void this.restartScan(this.lastScanActivity, `scan stalled: no advertisement for ${t - this.lastScanActivity} ms`, false);
    }
  }

  /** Stops scanning for good (the driver stops); resolves once noble confirmed it, or after a bounded wait. */
  halt(): Promise<void> {
    const scanning = this.scanWanted;
    this.scanWanted = false;
    if (!scanning) return Promise.resolve();
    this.stoppingScan = true;
    return bounded(this.o.noble.stopScanningAsync(), STOP_WAIT_MS, 'scan stop').catch(() => undefined);
  }

  private notice(state: LinkStatus['state'], detail: string): void {
    this.o.notice({ kind: 'link', from: { driver: this.o.driver, link: ADAPTER_LINK }, state, detail, time: this.o.now() });
  }

  private blind(start: number, reason: string): void {
    const end = this.o.now();
    this.o.notice({ kind: 'blind', driver: this.o.driver, start, end, reason, time: end });
  }

  private readonly onStateChange = (state: string): void => {
    if (this.o.stopping() || state === this.state) return;
    const wasOn = this.state === 'poweredOn';
    this.state = state;
    if (state === 'poweredOn') {
      this.o.setState('running', undefined);
      this.notice('open', 'adapter poweredOn');
      if (this.blindSince !== undefined) this.blind(this.blindSince, 'Bluetooth adapter was not powered on');
      this.blindSince = undefined;
      void this.startScan();
      return;
    }
    // Every other state means no radio: unsupported/unauthorized will not fix themselves, nor will
    // a kernel without Bluetooth (noble, on the prebuilt HCI socket, then says only "poweredOff").
    // No adapter at all is told apart from one that is off; one may still be plugged in.
    const absent = state === 'unsupported' || state === 'unauthorized' ? undefined : this.o.absence?.();
    const reason =
      state === 'unsupported'
        ? 'the Bluetooth adapter does not support Bluetooth Low Energy'
        : state === 'unauthorized'
          ? 'not permitted to use the Bluetooth adapter (grant CAP_NET_RAW or run as root)'
          : (absent ?? `Bluetooth adapter ${state}`);
    const gone = state === 'unsupported' || state === 'unauthorized' || absent?.includes('EAFNOSUPPORT') === true;
    this.o.setState(gone ? 'unavailable' : 'degraded', reason);
    this.notice('closed', reason);
    if (wasOn) this.blindSince = this.o.now();
    this.scanWanted = false;
    this.o.lost(reason);
  };

  private readonly onScanStart = (): void => {
    this.lastScanActivity = this.o.now();
  };

  private readonly onScanStop = (): void => {
    if (this.stoppingScan || this.restarting || !this.scanWanted || this.state !== 'poweredOn') return;
    // A stop nobody asked for; restart after the minimum backoff so a failing scan cannot spin.
    const since = this.o.now();
    this.restarting = true;
    setTimeout(() => {
      this.restarting = false;
      void this.restartScan(since, 'scan stopped without being asked to');
    }, this.o.restartDelayMs).unref();
  };

  private readonly onWarning = (message: string): void => {
    if (message.startsWith('Initialization')) {
      // noble's only report that its bindings could not open the adapter.
      this.o.setState('unavailable', `Bluetooth adapter initialisation failed: ${message}`);
    }
    this.notice(this.state === 'poweredOn' ? 'open' : 'closed', `noble: ${message}`);
  };

  private readonly onDiscover = (p: NoblePeripheral): void => {
    this.lastScanActivity = this.o.now();
    if (this.stallSince !== undefined) {
      this.blind(this.stallSince.since, this.stallSince.reason);
      this.stallSince = undefined;
    }
    this.o.advertised(p);
  };

  private async startScan(): Promise<void> {
    this.scanWanted = true;
    this.lastScanActivity = this.o.now();
    try {
      await bounded(this.o.noble.startScanningAsync([SERVICE_UUID], true), this.o.startTimeoutMs, 'scan start');
    } catch (e) {
      // The watchdog retries.
      this.notice('closed', `scan start failed: ${messageOf(e)}`);
    }
  }

  /**
   * Stops and starts the scan. A scan that stopped is blind from `silentSince` at once. A scan
   * that merely went quiet may have had nothing to hear (no lock in range): its silence counts as
   * blind only when advertisements come back after the restart, which shows the scan had stalled.
   */
  private async restartScan(silentSince: number, reason: string, certain = true): Promise<void> {
    if (this.restarting || !this.scanWanted || this.o.stopping()) return;
    this.restarting = true;
    this.restarts++;
    this.notice('open', `restarting scan: ${reason}`);
    if (certain) this.blind(silentSince, reason);
    else this.stallSince ??= { since: silentSince, reason };
    this.stoppingScan = true;
    try {
      await bounded(this.o.noble.stopScanningAsync(), STOP_WAIT_MS, 'scan stop');
    } catch {
      // A stalled scan may not confirm its stop; start anyway.
    } finally {
      this.stoppingScan = false;
      this.restarting = false;
    }
    if (this.scanWanted && !this.o.stopping()) await this.startScan();
  }
}
