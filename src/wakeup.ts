import { timerDelay } from "./timers.js";

/**
 * A level-triggered wake-up for idle workers: `notify()` before `wait()` is not lost, and one
 * notify releases every waiter. Waiting costs nothing while no one notifies.
 */
export class Wakeup {
  #notified = false;
  #waiters = new Set<() => void>();

  notify(): void {
    this.#notified = true;
    const waiters = [...this.#waiters];
    this.#waiters.clear();
    for (const wake of waiters) wake();
  }

  /**
   * Resolves on the next notify (or at once if one came since the last wait), or after `ms`
   * (at most 2^31−1: a longer wait ends then, and the caller looks again).
   */
  wait(ms: number, signal?: AbortSignal): Promise<void> {
    if (this.#notified || signal?.aborted) {
      this.#notified = false;
      return Promise.resolve();
    }
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        signal?.removeEventListener("abort", done);
        this.#waiters.delete(done);
        this.#notified = false;
        resolve();
      };
      const timer = setTimeout(done, timerDelay(ms));
      signal?.addEventListener("abort", done, { once: true });
      this.#waiters.add(done);
    });
  }
}
