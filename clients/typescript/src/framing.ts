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
    return this.pushUntil(chunk)[0];
  }

  /**
   * pushUntil is push that stops after the first frame stop is true of
   * (the last one returned) and returns the rest of the chunk after it,
   * unread: the stream changes its encoding there (compression after the
   * auth reply). The rest is undefined when no frame stopped it.
   */
  pushUntil(chunk: Buffer, stop?: (frame: Buffer) => boolean): [Buffer[], Buffer | undefined] {
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
      if (frame.length > 0) {
        frames.push(frame);
        if (stop?.(frame)) return [frames, chunk.subarray(start)];
      }
    }
    if (start < chunk.length) {
      const rest = chunk.length - start;
      if (this.partLen + rest > this.maxFrameSize + 1) throw tooLarge(this.maxFrameSize); // +1: a "\r" may end it
      // Copy: the socket may reuse its buffer, and a small tail must not pin a large chunk.
      this.parts.push(Buffer.from(chunk.subarray(start)));
      this.partLen += rest;
    }
    return [frames, undefined];
  }
}

function tooLarge(max: number): SamgwError {
  return new SamgwError(ClientCode.FrameTooLarge, `the server sent a frame longer than ${max} bytes`);
}

export { MAX_DEPTH, nestedDeeperThan } from './depth.js';
