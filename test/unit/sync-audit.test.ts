/**
 * The audit of a peer chain's lock signatures runs beside its pull (gateway/sync/audit.ts,
 * docs/SYNC.md §Verification): what a run passes while a pull of that chain goes on is reported
 * ('audited') but cosigned only once the pull has ended, by the run the pull's end asks for; with
 * no pull going on, a run that passes more cosigns at once. A replica and a context stand in for
 * the node's.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Auditor } from '../../gateway/sync/audit.js';
import type { PeerState, SyncContext } from '../../gateway/sync/context.js';
import type { AuditState, ChainReplica } from '../../ledger/peer.js';
import { waitUntil } from '../support/wait.js';

const ORIGIN = 'oti/audit-site/gw-a';

/** A replica whose audit() passes up to `stored` (what the pull stored so far). */
class FakeReplica {
  stored = 0;
  #size = 0;
  get audited(): AuditState {
    return { size: this.#size, failure: undefined };
  }
  audit(): Promise<AuditState> {
    this.#size = this.stored;
    return Promise.resolve(this.audited);
  }
  stopAudit(): void {}
}

function context(replica: FakeReplica, peer: Pick<PeerState, 'pulling'>): { c: SyncContext; audited: number[]; cosigned: string[] } {
  const audited: number[] = [];
  const cosigned: string[] = [];
  const c = {
    o: {},
    stopped: () => false,
    replica: () => Promise.resolve(replica as unknown as ChainReplica),
    peers: { get: (origin: string) => (origin === ORIGIN ? peer : undefined) },
    emit: (event: string, a: { size: number }) => {
      if (event === 'audited') audited.push(a.size);
      return true;
    },
    cosign: (origin: string) => cosigned.push(origin),
    refuse: () => undefined,
  };
  return { c: c as unknown as SyncContext, audited, cosigned };
}

void test('what the audit passes during a pull is cosigned once the pull has ended, not batch by batch', async () => {
  const replica = new FakeReplica();
  const peer: Pick<PeerState, 'pulling'> = { pulling: new Promise<void>(() => undefined) };
  const { c, audited, cosigned } = context(replica, peer);
  const auditor = new Auditor(c);
  // Two batches stored during the pull, each followed by an audit request (pull.ts).
  for (const size of [100, 250]) {
    replica.stored = size;
    auditor.audit(ORIGIN);
    await waitUntil(`the audit reaches ${size}`, () => audited.includes(size));
  }
  assert.deepEqual(cosigned, [], 'nothing cosigned while the pull goes on');
  // The pull ends (nothing more stored) and asks for the audit once more: that run cosigns.
  peer.pulling = undefined;
  auditor.audit(ORIGIN);
  await waitUntil('the run after the pull cosigns', () => cosigned.length > 0);
  assert.deepEqual(cosigned, [ORIGIN]);
  assert.deepEqual(audited, [100, 250], 'the run after the pull passed nothing new');
  // With no pull going on, a run that passes more cosigns at once; one that passes nothing does not.
  replica.stored = 300;
  auditor.audit(ORIGIN);
  await waitUntil('the next run cosigns', () => cosigned.length > 1);
  auditor.audit(ORIGIN);
  await auditor.stop(); // waits for the run going on
  assert.deepEqual(audited, [100, 250, 300]);
  assert.deepEqual(cosigned, [ORIGIN, ORIGIN]);
});
