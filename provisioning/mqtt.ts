/**
 * `oti mqtt user add|list|remove|passwd`: the users of the embedded broker (docs/MQTT.md §The
 * users file). The file is the one the gateway reads at every login (`broker.usersFile`, by
 * default `<dataDir>/mqtt-users.json`), so a change takes effect at the next connection, with no
 * restart. Run as the gateway's user (`sudo -u oti oti mqtt user ...`): the file is 0600.
 *
 * The gateway configuration loader is imported when a command runs, as for `oti doctor`.
 */
import { OtiError } from '../ledger/base/errors.js';
import { addMqttUser, readMqttUsers, removeMqttUser, setMqttUserPassword, MQTT_USER_ROLES, type MqttUserRole } from '../gateway/broker/users.js';
import { str, usage, type Command, type OptionSpec, type Parsed } from './command.js';
import type { Terminal } from './terminal.js';

const FILE_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  config: { type: 'string', value: 'FILE', help: 'the gateway configuration file, for broker.usersFile (else OTI_CONFIG and OTI_* variables)' },
  file: { type: 'string', value: 'FILE', help: 'the users file itself (default: broker.usersFile of the configuration, <dataDir>/mqtt-users.json)' },
};

const PASSWORD_OPTIONS: Readonly<Record<string, OptionSpec>> = {
  'password-file': { type: 'string', value: 'FILE', help: 'read the password from the first line of FILE (else $OTI_MQTT_PASSWORD, else a prompt, twice)' },
};

/** The users file: --file, else the configuration's broker.usersFile. */
async function usersFile(p: Parsed): Promise<string> {
  const file = str(p, 'file');
  if (file !== undefined) return file;
  const { loadConfig } = await import('../gateway/config/config.js');
  const configFile = str(p, 'config');
  const { config } = await loadConfig({ argv: configFile !== undefined ? ['--config', configFile] : [], env: process.env });
  return config.broker.usersFile;
}

function username(p: Parsed): string {
  return p.positionals[0] as string;
}

function password(p: Parsed, term: Terminal, name: string): Promise<string> {
  return term.passphrase({ file: str(p, 'password-file'), fileOption: '--password-file', env: 'OTI_MQTT_PASSWORD', purpose: `MQTT user ${name}`, confirm: true });
}

const USER: { name: string; help: string } = { name: 'USER', help: 'the MQTT user name (letters a-z, digits, . _ -; up to 64)' };

const add: Command = {
  name: 'mqtt user add',
  summary: 'Add a user of the embedded MQTT broker with a role; the running gateway takes it at the next login.',
  details: [
    'Roles: homeassistant (what Home Assistant does: reads discovery and states, sends its birth message), app (integrations: events, statuses, unenrolled locks), readonly (events and statuses), archive (a fleet archive pulling the chains: its own range requests, the checkpoints and its answers; its name is its requester). docs/MQTT.md §Roles lists what each may do.',
    'The password is stored as an scrypt hash in the users file (0600). No restart is needed: the broker reads the file at every login.',
  ],
  positionals: [USER],
  options: {
    role: { type: 'string', value: 'ROLE', help: `${MQTT_USER_ROLES.join(', ')} (required)` },
    ...PASSWORD_OPTIONS,
    ...FILE_OPTIONS,
  },
  examples: [
    'sudo -u oti oti mqtt user add home-assistant --role homeassistant --config /etc/oti-gateway/config.yaml',
    'OTI_MQTT_PASSWORD=... oti mqtt user add dashboard --role readonly --file ./data/mqtt-users.json --json',
    'sudo -u oti oti mqtt user add archive --role archive --config /etc/oti-gateway/config.yaml',
  ],
  async run(p, term) {
    const role = str(p, 'role', true);
    if (!(MQTT_USER_ROLES as readonly string[]).includes(role)) throw usage(`--role must be one of ${MQTT_USER_ROLES.join(', ')}`);
    const file = await usersFile(p);
    const name = username(p);
    const existing = await readMqttUsers(file).catch(() => []);
    if (existing.some((u) => u.username === name)) throw new OtiError('ERR_ARGUMENT', `MQTT user ${name} already exists in ${file}; oti mqtt user passwd changes its password`, { argument: 'username' });
    await addMqttUser(file, name, role as MqttUserRole, await password(p, term, name));
    return { json: { username: name, role, file }, text: [`MQTT user ${name} (${role}) added to ${file}; it can log in now`] };
  },
};

const list: Command = {
  name: 'mqtt user list',
  summary: 'List the users of the embedded MQTT broker and their roles.',
  options: { ...FILE_OPTIONS },
  examples: ['sudo -u oti oti mqtt user list --config /etc/oti-gateway/config.yaml', 'oti mqtt user list --file ./data/mqtt-users.json --json'],
  async run(p) {
    const file = await usersFile(p);
    let users: { username: string; role: string }[];
    try {
      users = (await readMqttUsers(file)).map((u) => ({ username: u.username, role: u.role }));
    } catch (e) {
      if (!(e instanceof OtiError && e.code === 'ERR_NOT_FOUND')) throw e;
      users = [];
    }
    return { json: { file, users }, text: users.length === 0 ? [`no MQTT users in ${file}`] : users.map((u) => `${u.username.padEnd(24)} ${u.role}`) };
  },
};

const remove: Command = {
  name: 'mqtt user remove',
  summary: 'Remove a user of the embedded MQTT broker; it cannot log in from then on.',
  positionals: [USER],
  options: { ...FILE_OPTIONS },
  examples: ['sudo -u oti oti mqtt user remove dashboard --config /etc/oti-gateway/config.yaml'],
  async run(p) {
    const file = await usersFile(p);
    const name = username(p);
    const removed = await removeMqttUser(file, name).catch((e: unknown) => {
      if (e instanceof OtiError && e.code === 'ERR_NOT_FOUND') return false;
      throw e;
    });
    if (!removed) throw new OtiError('ERR_NOT_FOUND', `there is no MQTT user ${name} in ${file}`, { username: name });
    return { json: { username: name, removed: true, file }, text: [`MQTT user ${name} removed from ${file}`] };
  },
};

const passwd: Command = {
  name: 'mqtt user passwd',
  summary: 'Set a new password for a user of the embedded MQTT broker (its role stays).',
  positionals: [USER],
  options: { ...PASSWORD_OPTIONS, ...FILE_OPTIONS },
  examples: ['sudo -u oti oti mqtt user passwd home-assistant --config /etc/oti-gateway/config.yaml'],
  async run(p, term) {
    const file = await usersFile(p);
    const name = username(p);
    await setMqttUserPassword(file, name, await password(p, term, name));
    return { json: { username: name, file }, text: [`new password set for MQTT user ${name}; it applies from the next login`] };
  },
};

export const mqttCommands: readonly Command[] = [add, list, remove, passwd];
