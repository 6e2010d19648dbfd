import { monotonicFactory } from "ulid";

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

// Monotonic: ids minted in the same millisecond still sort in the order they were minted.
const nextUlid = monotonicFactory();

export function newTaskId(now: number = Date.now()): TaskId {
  return `task_${nextUlid(now)}` as TaskId;
}

export function newCruxId(now: number = Date.now()): CruxId {
  return `cruxx_${nextUlid(now)}` as CruxId;
}

export function isTaskId(value: unknown): value is TaskId {
  return typeof value === "string" && TASK_ID_PATTERN.test(value);
}

export function isCruxId(value: unknown): value is CruxId {
  return typeof value === "string" && CRUX_ID_PATTERN.test(value);
}
