/**
 * mqtt-packet, the MQTT codec under both aedes (the embedded broker) and mqtt.js (sync, the
 * uplink, the external broker), keeps by default a table of 65,536 two-byte buffers for writing
 * 16-bit numbers, made at its first write and kept for the life of the process: 6 MB of V8 heap
 * (about 15 MB of RSS) in a gateway whose budget is 100 MB. Its README says to turn it off with
 * `writeToStream.cacheNumbers = false` before the first write; numbers are then written into
 * buffers made as needed (two bytes per packet id). Importing this module does that for the copy
 * each of the two packages loads (one shared copy when npm deduplicates them, as now).
 * docs/DECISIONS.md §Performance.
 */
import { createRequire } from 'node:module';

interface PacketWriter {
  writeToStream: { cacheNumbers: boolean };
}

/** The mqtt-packet that `owner` (a package this one depends on) loads. */
function packetWriterOf(owner: string): PacketWriter {
  return createRequire(import.meta.resolve(owner))('mqtt-packet') as PacketWriter;
}

export const PACKET_WRITERS: readonly PacketWriter[] = [packetWriterOf('aedes'), packetWriterOf('mqtt')];
for (const w of PACKET_WRITERS) w.writeToStream.cacheNumbers = false;
