/** MAX_DEPTH is the deepest nesting of arrays and objects a frame may have
 * (the message object is level 1), as the server's protocol.DefaultMaxDepth. */
export const MAX_DEPTH = 64;

/**
 * nestedDeeperThan reports whether the JSON text in frame nests arrays and
 * objects deeper than max, outside strings. A frame with fewer brackets
 * than that cannot, so the scan runs only for the rare frame that might:
 * JSON.parse of a frame nested 100,000 deep recurses that deep.
 */
export function nestedDeeperThan(frame: Uint8Array, max: number): boolean {
  let brackets = 0;
  for (let i = 0; i < frame.length && brackets <= max; i++) {
    const b = frame[i];
    if (b === 0x5b || b === 0x7b) brackets++;
  }
  if (brackets <= max) return false;
  let depth = 0;
  let inString = false;
  for (let i = 0; i < frame.length; i++) {
    const b = frame[i];
    if (inString) {
      if (b === 0x5c) i++; // the escaped byte
      else if (b === 0x22) inString = false;
    } else if (b === 0x22) {
      inString = true;
    } else if (b === 0x5b || b === 0x7b) {
      if (++depth > max) return true;
    } else if (b === 0x5d || b === 0x7d) {
      depth--;
    }
  }
  return false;
}
