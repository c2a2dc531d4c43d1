/**
 * Clock: the wall clock is plausible (a Raspberry Pi has no RTC battery and may boot in 1970),
 * and systemd-timesyncd/chrony report it synchronised (`timedatectl show`), when systemd is
 * there. Entry and checkpoint times come from this clock.
 */
import { execFile } from 'node:child_process';
import { result, type CheckResult } from './result.js';

export const MIN_YEAR = 2024;

export function checkClockYear(now: number): CheckResult {
  const year = new Date(now).getUTCFullYear();
  if (year < MIN_YEAR) return result('clock', 'fail', `the clock says ${new Date(now).toISOString()}`, 'connect the gateway to a network with NTP (timedatectl set-ntp true), or add an RTC module', { year });
  return result('clock', 'pass', `the clock says ${new Date(now).toISOString()}`, undefined, { year });
}

export function checkNtp(): Promise<CheckResult> {
  return new Promise((resolve) => {
    execFile('timedatectl', ['show', '--property=NTPSynchronized', '--value'], { timeout: 5000 }, (err, stdout) => {
      if (err !== null) {
        resolve(result('clock sync', 'skip', `timedatectl is not available here (${(err as NodeJS.ErrnoException).code ?? err.message.split('\n')[0]})`));
        return;
      }
      const v = stdout.trim();
      if (v === 'yes') resolve(result('clock sync', 'pass', 'NTP synchronised (timedatectl)'));
      else resolve(result('clock sync', 'warn', `NTP not synchronised (timedatectl NTPSynchronized=${v || 'unknown'})`, 'timedatectl set-ntp true; check that UDP port 123 reaches an NTP server'));
    });
  });
}
