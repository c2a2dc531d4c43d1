/**
 * The sync conformance suite (test/support/sync-conformance.ts) over the in-memory pipe
 * (gateway/sync/transport-pipe.ts): whole gateways in one process, no sockets, no child
 * processes; faults are injected deterministically. The same cases run over real aedes brokers
 * in test/integration/sync-conformance.test.ts.
 */
import { syncConformance } from '../support/sync-conformance.js';
import { pipeNet } from '../support/sync-nets.js';

syncConformance('pipe', pipeNet);
