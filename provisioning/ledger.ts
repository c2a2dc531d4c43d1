/**
 * `oti ledger accept-loss`: the operator's decision for a gateway whose ledger is shorter than the
 * last checkpoint it signed and that no peer could give back (docs/SYNC.md §Recovery). It writes
 * `<data>/ledger-decision.json`, signed with the gateway key (gateway/sync/ledger-decision.ts); the
 * waiting gateway sees it within a second and appends again from what its ledger holds.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { OtiError } from '../ledger/base/errors.js';
import { fingerprint } from '../ledger/crypto.js';
import { loadOrCreateIdentity } from '../gateway/config/identity.js';
import { LAST_CHECKPOINT_FILE, readLastCheckpointRecord } from '../gateway/sync/checkpoint-record.js';
import { writeLedgerDecision } from '../gateway/sync/ledger-decision.js';
import { flag, str, usage, type Command } from './command.js';

const acceptLoss: Command = {
  name: 'ledger accept-loss',
  summary: 'Let a gateway whose ledger was lost (and that no peer could restore) append again, accepting the loss.',
  details: [
    'Use only when the gateway logs ERR_LEDGER_LOST and no other gateway of the site holds its chain: on a site with other gateways, start one of them instead, and the chain is recovered without loss.',
    'When the record says that peers saw a checkpoint beyond what the ledger holds (the gateway found it retained on their brokers), do not accept: retire the id instead (oti gateway revoke, oti gateway enroll --id NEW, oti gateway apply-bundle --force; docs/SYNC.md §Recovery of the own chain). The confirmation says so.',
    'Entries beyond what the ledger holds are given up. Gateways that saw a later checkpoint of this chain will report the new one as equivocation (docs/SYNC.md §Equivocation).',
    'Reads site.json, gateway.key (OTI_KEY_PASSPHRASE when encrypted) and last-checkpoint.json from the data folder; writes ledger-decision.json there. The gateway may keep running.',
  ],
  options: {
    data: { type: 'string', value: 'DIR', help: 'the gateway data folder (e.g. /var/lib/oti-gateway)' },
    yes: { type: 'boolean', short: 'y', help: 'do not ask for confirmation' },
  },
  examples: ['sudo -u oti oti ledger accept-loss --data /var/lib/oti-gateway', 'oti ledger accept-loss --data ./data --yes --json'],
  async run(p, term) {
    const data = str(p, 'data');
    if (data === undefined) throw usage('--data DIR (the gateway data folder) is required');
    if (!existsSync(join(data, LAST_CHECKPOINT_FILE))) {
      throw new OtiError('ERR_NOT_FOUND', `${join(data, LAST_CHECKPOINT_FILE)} does not exist: this gateway has no record of a lost chain, so there is nothing to accept`, { path: join(data, LAST_CHECKPOINT_FILE) });
    }
    const passphrase = process.env['OTI_KEY_PASSPHRASE'];
    const id = await loadOrCreateIdentity(data, passphrase !== undefined ? { passphrase } : {});
    const origin = `oti/${id.trust.siteId}/${id.gatewayId}`;
    const found = await readLastCheckpointRecord(data, origin, id.key.publicKey);
    if (found === undefined) throw new OtiError('ERR_NOT_FOUND', `no last-checkpoint record in ${data}`);
    const record = found.checkpoint;
    const seen = found.seenByPeers;
    const warning = `peers saw a checkpoint of ${id.gatewayId}'s chain beyond what its ledger holds (retained on their brokers): a chain it signs after this contradicts it, and every gateway of the site will list ${id.gatewayId} as compromised (equivocation). Retire the id instead: oti gateway revoke --id ${id.gatewayId} --data ${data}, oti gateway enroll --id NEW, oti gateway apply-bundle NEW.bundle.json --data ${data} --force (docs/SYNC.md §Recovery of the own chain).`;
    const question = `Accept that gateway ${id.gatewayId} loses every entry of its chain it no longer holds (it signed ${record.size})?`;
    await term.confirm(seen ? `WARNING: ${warning} ${question}` : question, flag(p, 'yes'));
    const path = await writeLedgerDecision(data, record, id.key.seed, Date.now());
    id.key.seed.fill(0);
    return {
      json: { origin, recordSize: record.size, decision: path, key: fingerprint(id.key.publicKey), seenByPeers: seen },
      text: [
        ...(seen ? [term.yellow(`warning: ${warning}`)] : []),
        `decision written to ${path}: ${origin} may append again from what its ledger holds (it had signed ${record.size} entries)`,
        '  the gateway picks it up within a second; its log says "an operator accepted the loss"',
      ],
    };
  },
};

export const ledgerCommands: readonly Command[] = [acceptLoss];
