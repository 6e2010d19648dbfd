/**
 * Checks of the arguments the public API receives: each returns the typed value or throws a
 * ValidationError naming the offending field. Nothing is written before they pass.
 */
import { z } from "zod";
import { formatPath, ValidationError } from "./errors.js";
import type { TaskId } from "./ids.js";
import { SEED_LEASE_OWNER } from "./lifecycle.js";
import {
  checkText,
  DEPTH,
  MAX_IDEMPOTENCY_KEY_LENGTH,
  MAX_KIND_LENGTH,
  MAX_OWNER_LENGTH,
  MAX_REASON_LENGTH,
} from "./limits.js";
import type { KindFilter } from "./task-state.js";
import { checkTimerMs } from "./timers.js";
import { jsonTextAt, validate } from "./wire/codec.js";
import type { Json } from "./wire/json.js";
import { taskIdSchema } from "./wire/schema.js";

export const DEFAULT_LEASE_MS = 30_000;
export const MIN_LEASE_MS = 100;
/** The last time a Date can hold; `now + delayMs` under it stays an exact integer. */
const LAST_DATE_MS = 8_640_000_000_000_000;

export const submitOptionsSchema = z
  .strictObject({
    delayMs: z.number().int().min(0).max(LAST_DATE_MS).optional(),
    runAt: z
      .union([z.number().int().min(0), z.date().transform((d) => d.getTime())])
      .pipe(z.number().int().min(0, "expected a time at or after 1970").max(LAST_DATE_MS))
      .optional(),
    priority: z.number().int().min(-1_000_000).max(1_000_000).optional(),
    maxAttempts: z.number().int().min(1).max(1_000_000).optional(),
    idempotencyKey: z
      .string()
      .min(1)
      .max(MAX_IDEMPOTENCY_KEY_LENGTH)
      .refine((key) => key.isWellFormed(), "expected a key without lone surrogates")
      .optional(),
  })
  .refine((o) => o.delayMs === undefined || o.runAt === undefined, {
    message: "give delayMs or runAt, not both",
    path: ["runAt"],
  });

export function checkTaskId(id: unknown): TaskId {
  return validate(taskIdSchema, id, "$.id");
}

export function checkKind(kind: unknown, path = "$.kind"): string {
  return checkText(kind, path, 1, MAX_KIND_LENGTH);
}

/** A kind, an array of kinds, or `""` / `[]` for every kind. */
export function checkKinds(kinds: unknown): KindFilter {
  if (kinds === "") return [];
  if (typeof kinds === "string") return [checkKind(kinds, "$.kinds")];
  const items = arrayItems(kinds, "$.kinds", "expected a kind or an array of kinds");
  return items.map((kind, i) => checkKind(kind, `$.kinds[${i}]`));
}

/**
 * The fields `keys` of an options argument, each read once (absent ones left out):
 * `undefined` gives `{}`; anything but a non-array object is VALIDATION at `path`, and so is a
 * field that cannot be read (a throwing getter or Proxy trap, kept as the `cause`), so the
 * caller's own error never escapes. Later checks see only the copy.
 */
export function optionsObject<T extends object, K extends keyof T & string>(
  value: T | null | undefined,
  keys: readonly K[],
  path = "$",
  expected = "expected an options object",
): Partial<Pick<T, K>> {
  if (value === undefined) return {};
  const out: Partial<Pick<T, K>> = {};
  let key: K | undefined;
  try {
    if (typeof value !== "object" || value === null || Array.isArray(value)) {
      throw new ValidationError(path, expected);
    }
    for (key of keys) {
      const field = value[key];
      if (field !== undefined) out[key] = field;
    }
  } catch (cause) {
    if (cause instanceof ValidationError) throw cause;
    const where = key === undefined ? path : formatPath(path, [key]);
    throw new ValidationError(where, "the value cannot be read", { cause });
  }
  return out;
}

/**
 * An array argument's items, read once: anything but an array is VALIDATION at `path`, a hole
 * or an item that cannot be read (a Proxy trap) at its index.
 */
export function arrayItems(value: unknown, path: string, expected: string): unknown[] {
  const items: unknown[] = [];
  let at = path;
  try {
    if (!Array.isArray(value)) throw new ValidationError(path, expected);
    const length: number = value.length;
    for (let i = 0; i < length; i++) {
      at = `${path}[${i}]`;
      if (!Object.hasOwn(value, i)) throw new ValidationError(at, "expected an item, not a hole");
      items.push(value[i]);
    }
  } catch (cause) {
    if (cause instanceof ValidationError) throw cause;
    throw new ValidationError(at, "the value cannot be read", { cause });
  }
  return items;
}

export function checkOwner(owner: unknown): string {
  return checkText(owner, "$.owner", 1, MAX_OWNER_LENGTH);
}

/** A lease owner a worker or claim() may use: not the one updateStatus() leases under. */
export function checkLeaseOwner(owner: unknown): string {
  const checked = checkOwner(owner);
  if (checked === SEED_LEASE_OWNER) {
    throw new ValidationError("$.owner", `"${SEED_LEASE_OWNER}" is the owner updateStatus() uses`);
  }
  return checked;
}

/** The reason given to cancel(): stored in the task's CruxErr. */
export function checkReason(reason: unknown): string {
  return checkText(reason, "$.reason", 0, MAX_REASON_LENGTH);
}

/**
 * The last ms whose RFC 3339 timestamp has a four-digit year (9999-12-31T23:59:59.999Z): a
 * later one prints as `+010000-…`, which no reader (ours, chrono) takes. It is under 2^48, so
 * a ULID holds it too.
 */
export const LAST_CLOCK_MS = 253_402_300_799_999;

/**
 * The `clock` option, checked each time it is read: an integer epoch ms from 0 to
 * LAST_CLOCK_MS (the timestamps a run stores are made from it), else a ValidationError at
 * `$.clock` before anything is written.
 */
export function checkedClock(clock: unknown): () => number {
  if (typeof clock !== "function") {
    throw new ValidationError("$.clock", "expected a function returning epoch ms");
  }
  return () => {
    let now: unknown;
    try {
      now = clock();
    } catch (cause) {
      throw new ValidationError("$.clock", "the clock threw", { cause });
    }
    if (typeof now !== "number" || !Number.isSafeInteger(now) || now < 0 || now > LAST_CLOCK_MS) {
      const got = typeof now === "number" ? String(now) : typeof now;
      throw new ValidationError(
        "$.clock",
        `expected an integer epoch ms from 0 to ${LAST_CLOCK_MS} (9999-12-31T23:59:59.999Z), got ${got}`,
      );
    }
    return now;
  };
}

export function checkToken(token: unknown): string {
  if (typeof token !== "string" || token.length === 0) {
    throw new ValidationError("$.token", "expected the lease token from claim()");
  }
  return token;
}

export function checkLeaseMs(leaseMs: unknown): number {
  return leaseMs === undefined
    ? DEFAULT_LEASE_MS
    : checkTimerMs(leaseMs, MIN_LEASE_MS, "$.leaseMs");
}

export function positiveInteger(value: unknown, path: string): number {
  return integerAtLeast(value, 1, path);
}

export function integerAtLeast(value: unknown, min: number, path: string): number {
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < min) {
    throw new ValidationError(path, `expected an integer of at least ${min}`);
  }
  return value;
}

/** The value, checked to be JSON storable `depth` levels deep (ValidationError naming the path if not). */
export function jsonValue(value: unknown, path: string, depth: number): Json {
  jsonTextAt(value, path, depth);
  return value as Json;
}

/** The input's JSON text; ValidationError (naming the path) if it is not JSON or too large. */
export function encodeInput(input: unknown, maxBytes: number, path: string): string {
  const text = jsonTextAt(input, path, DEPTH.input);
  const bytes = Buffer.byteLength(text);
  if (bytes > maxBytes) {
    throw new ValidationError(path, `input is ${bytes} bytes, over the limit of ${maxBytes}`);
  }
  return text;
}
