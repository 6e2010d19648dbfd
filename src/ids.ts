import { randomFillSync } from "node:crypto";
import { monotonicFactory, type PRNG, TIME_LEN, TIME_MAX, ULIDError } from "ulid";
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

/** The latest time a ULID holds, in epoch ms (year 10889). */
export const MAX_TIME: number = TIME_MAX;

/** The bytes one refill of the random pool draws: one fresh ULID takes 16, so 256 ids a call. */
const POOL_BYTES = 4096;

/**
 * A random source for `ulid`, which asks for one fraction per base32 character: served from a
 * pooled buffer, one getrandom call per POOL_BYTES, where ulid's default source makes one per
 * character (2 % of a drain, measured). A byte over 256 picks each of 32 digits equally often.
 */
function pooledRandom(): PRNG {
  const pool = new Uint8Array(POOL_BYTES);
  let at = POOL_BYTES;
  return () => {
    if (at === POOL_BYTES) {
      randomFillSync(pool);
      at = 0;
    }
    return (pool[at++] as number) / 256;
  };
}

/** The time part of a ULID minted at time 0. */
const TIME_ZERO = "0".repeat(TIME_LEN);

/**
 * A ULID minter on the caller's clock, monotonic: ids minted in the same millisecond (or while
 * the clock stands behind the last one) keep the last time and increment its random part, so
 * they sort in minting order. `random` is for tests; ids use the pooled source.
 */
export function ulidMinter(random: PRNG = pooledRandom()): (now: number) => string {
  const next = monotonicFactory(random);
  let latest = -1;
  return (now) => {
    if (!Number.isSafeInteger(now) || now < 0 || now > MAX_TIME) {
      throw new ValidationError(
        "$.now",
        `a ULID time must be an integer from 0 to 2^48 - 1, not ${typeof now === "number" ? now : typeof now}`,
      );
    }
    let id: string;
    try {
      // ulid reads a time of 0 as "use Date.now()": mint at 1 instead (a later id at time 1
      // increments it, still in order), and while no id is later than time 0 write 0 over it.
      id = next(now === 0 ? 1 : now);
    } catch (error) {
      // Only incrementing can fail: the last id's random part was already the largest (up to 2^80
      // ids minted without the clock passing its time). ulid keeps its state, so ids stay ordered
      // and a later `now` mints again.
      if (!(error instanceof ULIDError)) throw error;
      throw new ValidationError(
        "$.now",
        `no ULID is left at or before time ${now}: the random part is exhausted; pass a later time`,
        { cause: error },
      );
    }
    latest = Math.max(latest, now);
    return latest === 0 ? TIME_ZERO + id.slice(TIME_LEN) : id;
  };
}

const ulids = ulidMinter();

export function newTaskId(now: number = Date.now()): TaskId {
  return `task_${ulids(now)}` as TaskId;
}

export function newCruxId(now: number = Date.now()): CruxId {
  return `cruxx_${ulids(now)}` as CruxId;
}

export function isTaskId(value: unknown): value is TaskId {
  return typeof value === "string" && TASK_ID_PATTERN.test(value);
}

export function isCruxId(value: unknown): value is CruxId {
  return typeof value === "string" && CRUX_ID_PATTERN.test(value);
}
