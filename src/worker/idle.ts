/**
 * What an idle worker waits for, all in one place. A worker with every slot busy waits only
 * for one of its runs to end (or stop()) and the poll interval. One with a free slot also
 * waits for work submitted in this process, a commit by another process (through the
 * backend's change feed: a backend without one is never polled), and the next task falling
 * due or lease expiring.
 */
import type { KindFilter } from "../task-state.js";
import { timerDelay } from "../timers.js";
import type { Wakeup } from "../wakeup.js";
import type { WorkerHost } from "./host.js";

/** What an idle wait needs of the registry. */
export type IdleHost = Pick<WorkerHost, "wakeup" | "changes" | "now" | "nextWakeAt">;

export interface IdleOptions {
  /** Longest sleep. */
  readonly pollIntervalMs: number;
  /** How often the change feed's version is read while asleep (its watch wakes it sooner). */
  readonly changePollMs: number;
}

/** What a round saw before it looked for work: what counts as news for the sleep after it. */
export interface Look {
  /** The change feed's version; undefined without a feed. */
  readonly version: number | undefined;
  /** The registry's clock. */
  readonly at: number;
}

/**
 * One worker's idle waits, one at a time. Each sleep listens with the same few bound
 * functions: it allocates no AbortController or AbortSignal, and no promise but its own.
 */
export class IdleWait {
  readonly #host: IdleHost;
  readonly #kinds: KindFilter;
  readonly #options: IdleOptions;
  /** Notified when one of the worker's runs ends, or stop() is called. */
  readonly #local: Wakeup;
  /** The sleep in progress: how it ends. */
  #resolve: (() => void) | undefined;
  #reject: ((error: unknown) => void) | undefined;
  #timer: NodeJS.Timeout | undefined;
  /** Counts sleeps, so a version read during an earlier one cannot end a later one. */
  #sleeps = 0;
  /** The version the sleep in progress compares with; undefined unless it watches the feed. */
  #since: number | undefined;
  #unwatch: (() => void) | undefined;
  #poll: NodeJS.Timeout | undefined;
  #checking = false;
  #checkAgain = false;
  readonly #wake = (): void => this.#end();
  readonly #check = (): void => void this.#checkVersion();

  constructor(host: IdleHost, kinds: KindFilter, options: IdleOptions, local: Wakeup) {
    this.#host = host;
    this.#kinds = kinds;
    this.#options = options;
    this.#local = local;
  }

  /**
   * Call before looking for work: a commit from then on, even one racing the round, moves the
   * version past the one read here and wakes the sleep after it.
   */
  async look(): Promise<Look> {
    const version = await this.#host.changes?.version();
    return { version, at: this.#host.now() };
  }

  /**
   * Sleep until there may be something to do: with `busy` (no free slot), until a run ends or
   * the poll interval passes; otherwise also until work is submitted here, the feed's version
   * moves past `look.version`, or a task falls due or a lease expires after `look.at`.
   */
  async sleep(look: Look, busy: boolean): Promise<void> {
    const next = busy ? undefined : await this.#host.nextWakeAt(this.#kinds, look.at);
    const now = this.#host.now();
    const wakeAt = Math.min(now + this.#options.pollIntervalMs, next ?? Number.POSITIVE_INFINITY);
    if (wakeAt <= now) return;
    return new Promise<void>((resolve, reject) => {
      this.#sleeps++;
      this.#resolve = resolve;
      this.#reject = reject;
      // A notify that came while nobody listened ends the sleep at once.
      if (this.#local.listen(this.#wake) || (!busy && this.#host.wakeup.listen(this.#wake))) {
        return this.#end();
      }
      this.#timer = setTimeout(this.#wake, timerDelay(wakeAt - now));
      const feed = this.#host.changes;
      if (busy || feed === undefined) return;
      this.#since = look.version;
      this.#unwatch = feed.watch?.(this.#check);
      this.#check(); // a commit may have landed between `look` and now
    });
  }

  /** Ends the sleep in progress, if any: with `error`, when given, as its rejection. */
  #end(error?: unknown): void {
    const resolve = this.#resolve;
    const reject = this.#reject;
    if (resolve === undefined || reject === undefined) return;
    this.#resolve = undefined;
    this.#reject = undefined;
    clearTimeout(this.#timer);
    clearTimeout(this.#poll);
    this.#since = undefined;
    this.#local.off(this.#wake);
    this.#host.wakeup.off(this.#wake);
    this.#unwatch?.();
    this.#unwatch = undefined;
    if (error === undefined) resolve();
    else reject(error);
  }

  /**
   * Reads the feed's version: a move ends the sleep; otherwise it reads again after
   * `changePollMs`, or at once if the watch called meanwhile (that read may predate the commit).
   */
  async #checkVersion(): Promise<void> {
    const feed = this.#host.changes;
    if (feed === undefined || this.#since === undefined) return;
    if (this.#checking) {
      this.#checkAgain = true;
      return;
    }
    this.#checking = true;
    clearTimeout(this.#poll);
    try {
      do {
        this.#checkAgain = false;
        const sleep = this.#sleeps;
        const version = await feed.version();
        if (this.#since === undefined) return; // no sleep is watching the feed now
        if (sleep === this.#sleeps && version !== this.#since) return this.#end();
      } while (this.#checkAgain);
      this.#poll = setTimeout(this.#check, timerDelay(this.#options.changePollMs));
    } catch (error) {
      if (this.#since !== undefined) this.#end(error);
    } finally {
      this.#checking = false;
    }
  }
}
