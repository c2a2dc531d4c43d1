/**
 * The sync conformance suite (test/support/sync-conformance.ts) over real aedes brokers on
 * 127.0.0.1, reached by mqtt.js through one TCP proxy per node and broker (so that a cut is a
 * real one). The same cases run over the in-memory pipe in test/unit/sync-pipe.test.ts.
 */
import { syncConformance } from '../support/sync-conformance.js';
import { tcpNet } from '../support/sync-nets.js';

syncConformance('aedes over TCP', tcpNet);
