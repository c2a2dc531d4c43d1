/**
 * `oti doctor`: runs hardware-test/doctor.ts against this machine and prints the report.
 *
 * The configuration loader (with the YAML parser) and the checks are imported when the command
 * runs: every `oti` process loads every command's module, and these would add about 2.5 MB to
 * the V8 heap of all the others (`oti verify` among them).
 */
import type { CheckResult } from '../hardware-test/doctor.js';
import { EXIT_FAILURE, flag, int, str, usage, type Command } from './command.js';
import type { Terminal } from './terminal.js';

function line(term: Terminal, r: CheckResult): string {
  const tag = { pass: term.green('PASS'), warn: term.yellow('WARN'), fail: term.red('FAIL'), skip: 'SKIP' }[r.status];
  return `${tag}  ${r.name}: ${r.detail}${r.remedy !== undefined && r.status !== 'pass' ? `\n      remedy: ${r.remedy}` : ''}`;
}

const doctor: Command = {
  name: 'doctor',
  summary: 'Check this gateway: data folder, identity and enrolment expiry, whether it runs, storage fsync latency, signature verifier, clock, serial ports, Bluetooth, multicast, broker port.',
  details: [
    'Reads the gateway configuration (--config, or OTI_CONFIG and OTI_* variables; the installed oti sets OTI_CONFIG=/etc/oti-gateway/config.yaml when it is unset) for the data folder, serial ports and broker port; flags override it.',
    'Each check says PASS, WARN, FAIL (with a remedy) or SKIP (with the reason, e.g. no Bluetooth adapter). Exit code 1 when any check fails.',
    'It writes nothing but its short-lived fsync test files: a missing data folder is reported, not created.',
    'Run it as the gateway user (sudo -u oti oti doctor) so that permissions are checked as the gateway sees them.',
  ],
  options: {
    config: { type: 'string', value: 'FILE', help: 'the gateway configuration file' },
    data: { type: 'string', value: 'DIR', help: 'data folder to check (default: dataDir of the configuration)' },
    serial: { type: 'string', value: 'PATH[:BAUD]', multiple: true, help: 'a serial port to check (repeatable; default: serial.ports)' },
    loopback: { type: 'boolean', help: 'TX is bridged to RX on the serial ports: check that bytes come back' },
    'no-ble': { type: 'boolean', help: 'skip the Bluetooth check' },
    'ble-seconds': { type: 'string', value: 'N', help: 'Bluetooth scan time (default 3)' },
    'broker-port': { type: 'string', value: 'N', help: 'MQTT port to check (default: broker.port)' },
    'fsync-files': { type: 'string', value: 'N', help: 'files written for the fsync latency (default 50)' },
    api: { type: 'string', value: 'URL', help: 'the gateway’s local API, to tell whether it runs (default: api.host and api.port of the configuration)' },
  },
  examples: ['sudo -u oti oti doctor', 'oti doctor --config ./gateway.yaml', 'oti doctor --serial /dev/ttyUSB0:57600 --loopback', 'oti doctor --data ./data --no-ble --json'],
  async run(p, term) {
    const [{ loadConfig }, { runDoctor, healthy }] = await Promise.all([import('../gateway/config/config.js'), import('../hardware-test/doctor.js')]);
    const configFile = str(p, 'config');
    const { config } = await loadConfig({ argv: configFile !== undefined ? ['--config', configFile] : [], env: process.env });
    const serialArgs = (p.values.serial as string[] | undefined) ?? [];
    const serialPorts = serialArgs.length > 0
      ? serialArgs.map((s) => {
          const m = /^(.+?)(?::(\d{3,7}))?$/.exec(s);
          if (m === null || m[1] === undefined) throw usage(`--serial ${s}: expected PATH[:BAUD]`);
          return { path: m[1], baudRate: m[2] !== undefined ? Number(m[2]) : 115200 };
        })
      : config.serial.ports.map((x) => ({ path: x.path, baudRate: x.baudRate }));
    const live = !p.json;
    const results = await runDoctor({
      dataDir: str(p, 'data') ?? config.dataDir,
      serialPorts,
      loopback: flag(p, 'loopback'),
      gatewaySerialPorts: config.serial.ports.map((x) => x.path),
      ble: flag(p, 'no-ble') ? { skip: '--no-ble was given' } : config.ble.enabled ? true : { skip: `ble.enabled is false in the configuration (${configFile ?? term.env('OTI_CONFIG') ?? 'no file: the defaults'})` },
      bleScanSeconds: int(p, 'ble-seconds', 3, 1, 60),
      brokerHost: config.broker.host,
      brokerPort: int(p, 'broker-port', config.broker.port, 1, 65535),
      fsyncFiles: int(p, 'fsync-files', 50, 1, 10000),
      apiUrl: str(p, 'api') ?? `http://${config.api.host === '0.0.0.0' ? '127.0.0.1' : config.api.host.includes(':') ? `[${config.api.host}]` : config.api.host}:${config.api.port}`,
      onResult: (r) => {
        if (live) process.stdout.write(`${line(term, r)}\n`);
      },
    });
    const ok = healthy(results);
    const counts = (s: CheckResult['status']): number => results.filter((r) => r.status === s).length;
    const summary = `${counts('pass')} passed, ${counts('warn')} warnings, ${counts('fail')} failed, ${counts('skip')} skipped`;
    return { json: { ok, checks: results }, text: [ok ? term.green(summary) : term.red(summary)], exitCode: ok ? 0 : EXIT_FAILURE };
  },
};

export const doctorCommands: readonly Command[] = [doctor];
