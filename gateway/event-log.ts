/**
 * What the parts' events say in the gateway's log: one function per part, each the only place
 * that turns that part's typed events into log lines (levels chosen for whoever reads the
 * journal: routine at debug, a technician's business at warn). gateway/runtime.ts calls them as it
 * starts the parts.
 */
import { fingerprint } from '../ledger/crypto.js';
import { listen } from '../ledger/base/events.js';
import type { Ingest } from './ingest.js';
import type { Discovery } from './discovery/discovery.js';
import type { SyncNode } from './sync/node.js';
import type { Logger } from './log.js';
import { RepeatLog } from './repeat-log.js';

/** Driver and ingest notices that need a technician (a re-keyed, revoked or newer lock, a shared line): logged as warnings. */
const TECHNICIAN_CODES: ReadonlySet<string> = new Set(['ERR_LOCK_KEY', 'ERR_LOCK_REVOKED', 'ERR_PROTOCOL_VERSION', 'ERR_LINK_SHARED']);

/** Catch-up progress is logged at most this often per gateway. */
export const PROGRESS_LOG_INTERVAL_MS = 2000;

/**
 * Ingest and driver notices. A refused frame or message (a bad CRC, a malformed or oversized
 * frame: line noise, or a lock on the wrong baud rate) is logged at info the first time on its
 * link with its code, then at most once a minute with the number left out since, and at debug in
 * between (gateway/repeat-log.ts): a lock that sends garbage all day shows at info without
 * flooding the log. Every one is counted in oti_driver_notices_total{kind="rejected",code}.
 */
export function logIngest(ingest: Ingest, log: Logger, now: () => number = Date.now): () => void {
  const rejections = new RepeatLog();
  return listen(ingest, {
    fault: (e) => log.error({ err: e }, 'ingest failure'),
    unenrolled: (lock, info, from) => log.warn({ lock, fw: info?.fw, key: info?.key !== undefined ? fingerprint(info.key) : undefined, link: from.link }, `lock ${lock} is not enrolled: its events are refused until a technician enrols it (oti lock enroll)`),
    notice: (n) => {
      // A lock a technician must see to is a warning (docs/PROTOCOL.md §Flow).
      if (n.kind === 'rejected' && TECHNICIAN_CODES.has(n.code)) log.warn({ code: n.code, link: n.from.link }, n.detail);
      else if (n.kind === 'rejected') {
        const admitted = rejections.admit(n.from.link, n.code, now());
        if (admitted === undefined) log.debug({ code: n.code, link: n.from.link }, n.detail);
        else {
          const more = admitted.suppressed > 0 ? ` (and ${admitted.suppressed} more ${n.code} on this link since the last such line)` : '';
          log.info({ code: n.code, link: n.from.link, suppressed: admitted.suppressed }, `refused on ${n.from.link}: ${n.detail}${more}`);
        }
      } else if (n.kind === 'link') log.info({ link: n.from.link, state: n.state }, n.detail);
      else if (n.kind === 'blind') log.warn({ driver: n.driver, start: n.start, end: n.end }, `blind interval recorded: ${n.reason}`);
    },
  });
}

export function logDiscovery(discovery: Discovery, log: Logger): () => void {
  return listen(discovery, {
    peer: (p) => log.info({ via: p.via, gateway: p.gatewayId, host: p.host, port: p.port }, `peer ${p.gatewayId ?? p.host} at ${p.host}:${p.port} (${p.via})`),
    lost: (p) => log.info({ gateway: p.gatewayId, host: p.host }, `peer ${p.gatewayId ?? p.host} lost`),
    rejected: (r) => (r.reason === 'ERR_DISCOVERY_SITE' ? log.debug : log.warn).call(log, { code: r.reason, from: r.from, name: r.name }, r.detail),
    warning: (e) => log.debug({ err: e }, 'mDNS'),
    fault: (e) => log.error({ err: e }, `an mDNS announcement could not be checked: ${e.message}`),
  });
}

/**
 * Evidence, finished catch-ups, and catch-up progress (at most every PROGRESS_LOG_INTERVAL_MS).
 * Refusals are logged by the sync node itself, rate-limited (gateway/repeat-log.ts), and
 * counted in the metrics.
 */
export function logSync(sync: SyncNode, log: Logger, now: () => number = Date.now): () => void {
  let lastProgress = 0;
  return listen(sync, {
    evidence: (e) => log.error(e, `equivocation: chain ${e.origin} is refused from now on (evidence ${e.id})`),
    synced: (e) => log.info(e, `replica of ${e.origin} at ${e.size} entries`),
    progress: (p) => {
      if (now() - lastProgress < PROGRESS_LOG_INTERVAL_MS) return;
      lastProgress = now();
      log.info(p, `catching up ${p.origin}: ${p.size} entries, ${p.remaining} to go (${Math.round(p.entriesPerSecond)}/s)`);
    },
  });
}
