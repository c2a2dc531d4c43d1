/**
 * The target machine of an ELF file (a native Node addon, `*.node`): its header's e_machine.
 * deploy/native-check.ts uses it to keep, in a release for one architecture, only the addons
 * that architecture can load.
 */
import { open } from 'node:fs/promises';

/** e_machine values of the architectures a release is made for, by Debian architecture name. */
export const MACHINES = { amd64: 0x3e, arm64: 0xb7, armhf: 0x28 } as const;
export type DebianArch = keyof typeof MACHINES;

export const MACHINE_NAMES: Readonly<Record<number, string>> = { 0x3e: 'x86-64', 0xb7: 'aarch64', 0x28: 'arm', 0x03: 'x86' };

export interface ElfHeader {
  /** 1: 32-bit, 2: 64-bit. */
  readonly elfClass: number;
  readonly machine: number;
}

/** The ELF header of `path`, or undefined when the file is not ELF (a Mach-O or PE addon). */
export async function readElfHeader(path: string): Promise<ElfHeader | undefined> {
  const fh = await open(path, 'r');
  try {
    const b = Buffer.alloc(20);
    const { bytesRead } = await fh.read(b, 0, 20, 0);
    if (bytesRead < 20 || b.readUInt32BE(0) !== 0x7f454c46) return undefined;
    const little = b[5] === 1;
    return { elfClass: b[4] ?? 0, machine: little ? b.readUInt16LE(18) : b.readUInt16BE(18) };
  } finally {
    await fh.close();
  }
}
