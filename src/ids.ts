import { randomFillSync } from "node:crypto";
import { ValidationError } from "./errors.js";

declare const brand: unique symbol;
type Branded<T, B extends string> = T & { readonly [brand]: B };

/** `task_` + a 26-character ULID; lexical order is submit order. */
export type TaskId = Branded<string, "TaskId">;
/** `cruxx_` + a 26-character ULID. */
export type CruxId = Branded<string, "CruxId">;

// Crockford base32 without I, L, O, U; a leading digit above 7 would overflow 48 bits of time.
const ULID = "[0-7][0-9A-HJKMNP-TV-Z]{25}";
export const TASK_ID_PATTERN = new RegExp(`^task_${ULID}$`);
export const CRUX_ID_PATTERN = new RegExp(`^cruxx_${ULID}$`);

const BASE32 = "0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const TIME_DIGITS = 10;
const RANDOM_DIGITS = 16;
/** The latest time a ULID holds, in epoch ms (year 10889). */
export const MAX_TIME = 2 ** 48 - 1;

/**
 * ULIDs, monotonic: ids minted in the same millisecond (or while the clock stands behind the
 * last one) keep the last time and increment its random part, so they sort in minting order.
 * Randomness comes from a pooled buffer: one getrandom call per 256 ids, not one per character.
 */
export class UlidSource {
  readonly #pool = new Uint8Array(RANDOM_DIGITS * 256);
  #poolAt = this.#pool.length;
  #lastTime = -1;
  /** The last id's random part, one base32 digit (0–31) per entry. */
  readonly #random = new Uint8Array(RANDOM_DIGITS);

  next(now: number): string {
    if (!Number.isSafeInteger(now) || now < 0 || now > MAX_TIME) {
      throw new ValidationError(
        "$.now",
        `a ULID time must be an integer from 0 to 2^48 - 1, not ${String(now)}`,
      );
    }
    if (now <= this.#lastTime) this.#increment();
    else {
      this.#lastTime = now;
      this.#fresh();
    }
    let text = "";
    for (let i = TIME_DIGITS - 1, t = this.#lastTime; i >= 0; i--, t = Math.floor(t / 32)) {
      text = BASE32[t % 32] + text;
    }
    for (const digit of this.#random) text += BASE32[digit];
    return text;
  }

  #fresh(): void {
    if (this.#poolAt === this.#pool.length) {
      randomFillSync(this.#pool);
      this.#poolAt = 0;
    }
    for (let i = 0; i < RANDOM_DIGITS; i++)
      this.#random[i] = (this.#pool[this.#poolAt++] as number) & 31;
  }

  #increment(): void {
    for (let i = RANDOM_DIGITS - 1; i >= 0; i--) {
      const digit = this.#random[i] as number;
      if (digit < 31) {
        this.#random[i] = digit + 1;
        return;
      }
      this.#random[i] = 0;
    }
    // 2^80 ids in one millisecond: cannot happen unless the clock is stuck far behind.
    throw new RangeError("the ULID random part overflowed within one millisecond");
  }
}

const ulids = new UlidSource();

export function newTaskId(now: number = Date.now()): TaskId {
  return `task_${ulids.next(now)}` as TaskId;
}

export function newCruxId(now: number = Date.now()): CruxId {
  return `cruxx_${ulids.next(now)}` as CruxId;
}

export function isTaskId(value: unknown): value is TaskId {
  return typeof value === "string" && TASK_ID_PATTERN.test(value);
}

export function isCruxId(value: unknown): value is CruxId {
  return typeof value === "string" && CRUX_ID_PATTERN.test(value);
}
