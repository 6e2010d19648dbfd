/**
 * The lease renewals of one worker's runs, on one timer: each run renews every `periodMs`
 * from its claim, as an interval of its own would, but starting and ending a run only adds
 * it to and deletes it from a map.
 */
import { timerDelay } from "../timers.js";

/** A timer may fire this early by the monotonic clock (Node counts whole loop-time ms). */
const EARLY_MS = 1;

export class Heartbeats<Run> {
  readonly #periodMs: number;
  readonly #beat: (run: Run) => void;
  /** Each renewing run and when it renews next (performance.now() ms), in start order. */
  readonly #due = new Map<Run, number>();
  #timer: NodeJS.Timeout | undefined;
  readonly #fire = (): void => this.#renewDue();

  constructor(periodMs: number, beat: (run: Run) => void) {
    this.#periodMs = periodMs;
    this.#beat = beat;
  }

  /** Renew `run` every period from now until stop(run). */
  start(run: Run): void {
    const at = performance.now() + this.#periodMs;
    this.#due.set(run, at);
    // An armed timer is for an earlier run: due no later than this one.
    if (this.#timer === undefined) this.#arm(at);
  }

  /**
   * No more renewals of `run`. With no run left the timer goes too: it must not keep the
   * process alive.
   */
  stop(run: Run): void {
    this.#due.delete(run);
    if (this.#due.size === 0 && this.#timer !== undefined) {
      clearTimeout(this.#timer);
      this.#timer = undefined;
    }
  }

  #arm(at: number): void {
    this.#timer = setTimeout(this.#fire, timerDelay(Math.ceil(at - performance.now())));
  }

  #renewDue(): void {
    this.#timer = undefined;
    const now = performance.now();
    let next = Number.POSITIVE_INFINITY;
    for (const [run, at] of this.#due) {
      let following = at;
      if (at - now < EARLY_MS) {
        following = at + this.#periodMs;
        // A timer that fired a period late skips the renewals it missed, as an interval does.
        if (following - now < EARLY_MS) following = now + this.#periodMs;
        this.#due.set(run, following);
        this.#beat(run);
      }
      next = Math.min(next, following);
    }
    if (this.#timer === undefined && this.#due.size > 0) this.#arm(next);
  }
}
