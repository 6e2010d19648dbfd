/**
 * Node's timers take delays up to 2^31−1 ms (24.8 days). A longer one fires after 1 ms, with a
 * TimeoutOverflowWarning: a heartbeat period or poll interval beyond it would spin.
 */
import { ValidationError } from "./errors.js";

export const MAX_TIMER_MS = 2_147_483_647;

/** A duration some timer waits: an integer from `min` to MAX_TIMER_MS, else VALIDATION. */
export function checkTimerMs(value: unknown, min: number, path: string): number {
  if (
    typeof value !== "number" ||
    !Number.isSafeInteger(value) ||
    value < min ||
    value > MAX_TIMER_MS
  ) {
    throw new ValidationError(path, `expected an integer from ${min} to ${MAX_TIMER_MS} (ms)`);
  }
  return value;
}

/** `ms` as a timer can wait it: a longer wait wakes early, and the waiter looks again. */
export function timerDelay(ms: number): number {
  return Math.min(MAX_TIMER_MS, Math.max(0, ms));
}
