/**
 * COSE_Sign1 (RFC 9052 §4.2) with EdDSA (alg -8, RFC 9053 §2.2), in the one profile locks use:
 *
 *   COSE_Sign1 = [ protected: bstr .cbor {1: -8}, unprotected: {}, payload: bstr, signature: bstr(64) ]
 *
 * untagged (the context says what it is), protected header exactly h'a10127', empty unprotected
 * header, attached payload. Anything else is rejected rather than interpreted, so one event has
 * exactly one encoding. The signature covers Sig_structure (RFC 9052 §4.4):
 *
 *   [ "Signature1", protected, external_aad = h'', payload ]
 */
import { encode, decode, type CborValue } from './base/cbor.js';
import { bytesEqual } from './base/bytes.js';
import { OtiError } from './base/errors.js';
import type { Signer } from './crypto.js';
import { verify, SIGNATURE_BYTES, type Ed25519Verify } from './crypto.js';

export const COSE_PROTECTED_EDDSA = new Uint8Array([0xa1, 0x01, 0x27]);
/** Largest COSE_Sign1 accepted: payload limit plus framing. */
export const COSE_MAX_BYTES = 4096;

export interface CoseSign1 {
  readonly payload: Uint8Array;
  readonly signature: Uint8Array;
}

/** 0x84 (array of 4), "Signature1", h'a10127', h'' — the fixed start of every Sig_structure here. */
const SIG_STRUCTURE_PREFIX = Buffer.from('846a5369676e61747572653143a1012740', 'hex');

/** Sig_structure bytes: the fixed prefix, then the payload as a byte string (shortest-form head). */
export function sigStructure(payload: Uint8Array): Uint8Array {
  const n = payload.length;
  const head = n < 24 ? [0x40 | n] : n < 0x100 ? [0x58, n] : n < 0x10000 ? [0x59, n >> 8, n & 0xff] : [0x5a, (n >>> 24) & 0xff, (n >> 16) & 0xff, (n >> 8) & 0xff, n & 0xff];
  const out = Buffer.allocUnsafe(SIG_STRUCTURE_PREFIX.length + head.length + n);
  SIG_STRUCTURE_PREFIX.copy(out, 0);
  out.set(head, SIG_STRUCTURE_PREFIX.length);
  out.set(payload, SIG_STRUCTURE_PREFIX.length + head.length);
  return out;
}

export function coseSign1(signer: Signer, payload: Uint8Array): Uint8Array {
  const signature = signer.sign(sigStructure(payload));
  return encode([COSE_PROTECTED_EDDSA, {}, payload, signature]);
}

/** Strictly parses a COSE_Sign1 in our profile; does not verify the signature. */
export function parseCoseSign1(bytes: Uint8Array): CoseSign1 {
  const v: CborValue = decode(bytes, COSE_MAX_BYTES);
  if (!Array.isArray(v) || v.length !== 4) throw new OtiError('ERR_ENCODING_SCHEMA', 'COSE_Sign1 must be an array of 4 items', { field: 'cose' });
  const [prot, unprot, payload, signature] = v;
  if (!(prot instanceof Uint8Array) || !bytesEqual(prot, COSE_PROTECTED_EDDSA)) {
    throw new OtiError('ERR_ENCODING_SCHEMA', 'COSE_Sign1 protected header must be {1: -8} (EdDSA)', { field: 'cose.protected' });
  }
  if (unprot === null || typeof unprot !== 'object' || Array.isArray(unprot) || unprot instanceof Uint8Array || Object.keys(unprot).length !== 0) {
    throw new OtiError('ERR_ENCODING_SCHEMA', 'COSE_Sign1 unprotected header must be an empty map', { field: 'cose.unprotected' });
  }
  if (!(payload instanceof Uint8Array)) throw new OtiError('ERR_ENCODING_SCHEMA', 'COSE_Sign1 payload must be attached bytes', { field: 'cose.payload' });
  if (!(signature instanceof Uint8Array) || signature.length !== SIGNATURE_BYTES) {
    throw new OtiError('ERR_ENCODING_SCHEMA', 'COSE_Sign1 signature must be 64 bytes', { field: 'cose.signature' });
  }
  return { payload, signature };
}

export function verifyCoseSign1(publicKey: Uint8Array, cose: CoseSign1, ed25519: Ed25519Verify = verify): boolean {
  return ed25519(publicKey, sigStructure(cose.payload), cose.signature);
}
