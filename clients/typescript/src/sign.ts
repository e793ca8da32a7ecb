import { createPrivateKey, KeyObject, sign as edSign } from 'node:crypto';

/**
 * signedBytes are the exact bytes a signed data frame's sig covers:
 * "samgw-sig-v1\n" + id + "\n" + timestamp + "\n" + route + "\n" + payload,
 * with the payload's JSON text as it appears in the frame.
 */
export function signedBytes(id: string, timestamp: number, route: string, payloadText: string): Buffer {
  return Buffer.from(`samgw-sig-v1\n${id}\n${timestamp}\n${route}\n${payloadText}`, 'utf8');
}

/** A signing key: a PKCS#8 PEM (what `samgw keygen` writes) or a KeyObject. */
export type SignKey = string | Buffer | KeyObject;

/** loadSignKey parses key and checks that it is an Ed25519 private key. */
export function loadSignKey(key: SignKey): KeyObject {
  const k = key instanceof KeyObject ? key : createPrivateKey(key);
  if (k.type !== 'private' || k.asymmetricKeyType !== 'ed25519') {
    throw new TypeError('signKey must be an Ed25519 private key (PKCS#8 PEM from samgw keygen, or a KeyObject)');
  }
  return k;
}

/** signFrame returns the base64 signature of the frame's signed bytes. */
export function signFrame(key: KeyObject, id: string, timestamp: number, route: string, payloadText: string): string {
  return edSign(null, signedBytes(id, timestamp, route, payloadText), key).toString('base64');
}
