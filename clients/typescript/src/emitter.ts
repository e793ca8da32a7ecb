/** Listener lists by event name; the arguments of each event are typed by Events. */
type Listener<A extends unknown[]> = (...args: A) => void;
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type AnyListener = (...args: any[]) => void;
interface Entry {
  fn: AnyListener;
  listener: AnyListener; // what the caller passed (once wraps it)
}

/**
 * Emitter is the part of Node's EventEmitter the client uses (on, once,
 * off, emit, listenerCount, and the aliases node:events' once() calls),
 * with no Node built-in, so the same client runs in browsers.
 */
export class Emitter<Events extends { [K in keyof Events]: unknown[] }> {
  private readonly listeners = new Map<keyof Events, Entry[]>();

  on<K extends keyof Events & string>(name: K, fn: Listener<Events[K]>): this {
    const list = this.listeners.get(name) ?? [];
    list.push({ fn, listener: fn });
    this.listeners.set(name, list);
    return this;
  }

  addListener<K extends keyof Events & string>(name: K, fn: Listener<Events[K]>): this {
    return this.on(name, fn);
  }

  once<K extends keyof Events & string>(name: K, fn: Listener<Events[K]>): this {
    const wrapper = (...args: Events[K]) => {
      this.off(name, fn);
      fn(...args);
    };
    const list = this.listeners.get(name) ?? [];
    list.push({ fn: wrapper, listener: fn });
    this.listeners.set(name, list);
    return this;
  }

  off<K extends keyof Events & string>(name: K, fn: Listener<Events[K]>): this {
    const list = this.listeners.get(name);
    const i = list?.findIndex((e) => e.listener === fn || e.fn === fn) ?? -1;
    if (list && i >= 0) list.splice(i, 1);
    return this;
  }

  removeListener<K extends keyof Events & string>(name: K, fn: Listener<Events[K]>): this {
    return this.off(name, fn);
  }

  /** emit calls the listeners of name in order and reports whether there were any. */
  emit<K extends keyof Events & string>(name: K, ...args: Events[K]): boolean {
    const list = this.listeners.get(name);
    if (!list || list.length === 0) return false;
    if (list.length === 1) list[0]!.fn(...args);
    else for (const e of [...list]) e.fn(...args);
    return true;
  }

  listenerCount<K extends keyof Events & string>(name: K): number {
    return this.listeners.get(name)?.length ?? 0;
  }
}
