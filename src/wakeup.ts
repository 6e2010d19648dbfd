import { timerDelay } from "./timers.js";

/**
 * A level-triggered wake-up for idle workers: `notify()` before anyone listens is not lost
 * (the next listener takes it), and one notify wakes every listener. Listening costs nothing
 * while no one notifies, and a listener is a plain function: an idle round that listens to
 * several of these builds no AbortSignal to stop listening to the rest.
 */
export class Wakeup {
  #notified = false;
  #listeners = new Set<() => void>();

  notify(): void {
    if (this.#listeners.size === 0) {
      this.#notified = true;
      return;
    }
    const listeners = [...this.#listeners];
    this.#listeners.clear();
    for (const wake of listeners) wake();
  }

  /**
   * True, taking it, if a notify came since the last was taken; else `wake` is called once, at
   * the next notify, unless `off(wake)` comes first.
   */
  listen(wake: () => void): boolean {
    if (this.#notified) {
      this.#notified = false;
      return true;
    }
    this.#listeners.add(wake);
    return false;
  }

  off(wake: () => void): void {
    this.#listeners.delete(wake);
  }

  /**
   * Resolves on the next notify (or at once if one came since the last was taken), or after
   * `ms` (at most 2^31−1: a longer wait ends then, and the caller looks again).
   */
  wait(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.off(done);
        resolve();
      };
      const timer = setTimeout(done, timerDelay(ms));
      if (this.listen(done)) done();
    });
  }
}
