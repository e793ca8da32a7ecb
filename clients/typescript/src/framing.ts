import { ClientCode, SamgwError } from './errors.js';

/**
 * FrameReader splits a byte stream into frames at "\n" (a "\r\n" ending is
 * accepted, empty lines are skipped), however the bytes were split or
 * coalesced by the network. It never holds more than maxFrameSize bytes of
 * an unfinished frame: push throws frame_too_large instead, after which the
 * stream cannot be trusted.
 */
export class FrameReader {
  private parts: Buffer[] = [];
  private partLen = 0;

  constructor(private readonly maxFrameSize: number) {}

  /** push takes the next chunk and returns the frames it completed. */
  push(chunk: Buffer): Buffer[] {
    const frames: Buffer[] = [];
    let start = 0;
    for (;;) {
      const nl = chunk.indexOf(0x0a, start);
      if (nl < 0) break;
      let frame: Buffer;
      if (this.partLen > 0) {
        this.parts.push(chunk.subarray(start, nl));
        frame = Buffer.concat(this.parts, this.partLen + nl - start);
        this.parts = [];
        this.partLen = 0;
      } else {
        frame = chunk.subarray(start, nl);
      }
      start = nl + 1;
      if (frame.length > 0 && frame[frame.length - 1] === 0x0d) frame = frame.subarray(0, frame.length - 1);
      if (frame.length > this.maxFrameSize) throw tooLarge(this.maxFrameSize);
      if (frame.length > 0) frames.push(frame);
    }
    if (start < chunk.length) {
      const rest = chunk.length - start;
      if (this.partLen + rest > this.maxFrameSize + 1) throw tooLarge(this.maxFrameSize); // +1: a "\r" may end it
      // Copy: the socket may reuse its buffer, and a small tail must not pin a large chunk.
      this.parts.push(Buffer.from(chunk.subarray(start)));
      this.partLen += rest;
    }
    return frames;
  }
}

function tooLarge(max: number): SamgwError {
  return new SamgwError(ClientCode.FrameTooLarge, `the server sent a frame longer than ${max} bytes`);
}

/** MAX_DEPTH is the deepest nesting of arrays and objects a frame may have
 * (the message object is level 1), as the server's protocol.DefaultMaxDepth. */
export const MAX_DEPTH = 64;

/**
 * nestedDeeperThan reports whether the JSON text in frame nests arrays and
 * objects deeper than max, outside strings. A frame with fewer brackets
 * than that cannot, so the scan runs only for the rare frame that might:
 * JSON.parse of a frame nested 100,000 deep recurses that deep.
 */
export function nestedDeeperThan(frame: Buffer, max: number): boolean {
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
