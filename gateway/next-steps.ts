/**
 * What a newcomer can do once the gateway runs, printed on its first start only (the start that
 * created its identity or applied its bundle): see its state, watch the notifications, add an
 * MQTT user (Home Assistant, an app), try the demo, enrol it for real.
 */
import { relative, isAbsolute } from 'node:path';

export interface NextStepsInput {
  readonly site: string;
  readonly apiUrl: string;
  /** Host and port an MQTT client on this machine reaches the embedded broker at. */
  readonly brokerHost: string;
  readonly brokerPort: number;
  readonly usersFile: string;
  /** A development site (created on this start), where the demo can run. */
  readonly development: boolean;
  /** The demo's own mosquitto_sub line, when the demo runs. */
  readonly demoWatch?: string | undefined;
  readonly cwd: string;
}

/** A path as short as it can be written from `cwd`. */
function shown(path: string, cwd: string): string {
  const r = relative(cwd, path);
  return r !== '' && !r.startsWith('..') && !isAbsolute(r) ? `./${r}` : path;
}

/** The lines to print: a command, then what it does. */
export function nextSteps(s: NextStepsInput): string[] {
  const users = shown(s.usersFile, s.cwd);
  const watch =
    s.demoWatch ??
    `mosquitto_sub -h ${s.brokerHost} -p ${s.brokerPort} -u dashboard -P "$OTI_MQTT_PASSWORD" -t 'oti/${s.site}/gateways/#' -t 'oti/${s.site}/events/#' -t 'oti/${s.site}/status/#' -v`;
  return [
    `npx oti status --api ${s.apiUrl}`,
    `    this gateway's state: drivers, chain, broker, peers (oti --help lists every command)`,
    // Exported, not set for one command: the mosquitto_sub line below reads it too.
    `export OTI_MQTT_PASSWORD='choose-a-password'`,
    `    the password of the MQTT user added next, kept in this shell for the commands below`,
    `npx oti mqtt user add dashboard --role readonly --file ${users}`,
    `    an MQTT user (roles: homeassistant, app, readonly; docs/MQTT.md) with that password; the running gateway takes it at once`,
    watch,
    `    the notifications as they are published`,
    ...(s.development && s.demoWatch === undefined ? ['npm run demo', '    three simulated locks on ptys (needs socat): events within seconds'] : []),
    ...(s.development ? ['docs/INSTALL.md', '    a real gateway: enrolled in a site with oti, not this development site'] : []),
  ];
}
