/**
 * Which tasks the queue paths select, and in what order: the rules every adapter's queries
 * implement (the SQLite indexes are built for exactly these orders), written once here for
 * adapters that select in code and for merging per-kind results.
 */
import type { KindFilter, TaskState } from "./task-state.js";

/** Whether a task of `kind` passes `kinds` (`[]` = every kind). */
export function kindMatches(kinds: KindFilter, kind: string): boolean {
  return kinds.length === 0 || kinds.includes(kind);
}

/** What claim order reads of a task. */
export interface ClaimOrdered {
  readonly priority: number;
  readonly runAt: number;
  readonly id: string;
}

/** Negative when `a` is claimed before `b`: priority, then due time, then submit order. */
export function claimOrder(a: ClaimOrdered, b: ClaimOrdered): number {
  return b.priority - a.priority || a.runAt - b.runAt || idOrder(a, b);
}

/** Negative when `a` is swept before `b`: the lease that expired first. */
export function sweepOrder(a: TaskState, b: TaskState): number {
  return (a.lease?.expiresAt ?? 0) - (b.lease?.expiresAt ?? 0) || idOrder(a, b);
}

/** Submit order, which is id order (ULIDs): how `pending()` and `list()` return tasks. */
export function idOrder(a: { readonly id: string }, b: { readonly id: string }): number {
  return a.id < b.id ? -1 : a.id > b.id ? 1 : 0;
}

/** Whether a claim at `now` may take the task: pending and due. */
export function isDue(state: TaskState, now: number): boolean {
  return state.status === "pending" && state.runAt <= now;
}

/** Whether a sweep takes the task back: running, its lease expired by `now` or held by `owner`. */
export function isSwept(state: TaskState, now: number, owner: string | undefined): boolean {
  const { lease } = state;
  return (
    state.status === "running" &&
    lease !== null &&
    (lease.expiresAt <= now || (owner !== undefined && lease.owner === owner))
  );
}

/** When an idle worker should look again for the task: its due time, or its lease's expiry. */
export function wakeTime(state: TaskState): number | undefined {
  if (state.status === "pending") return state.runAt;
  if (state.status === "running") return state.lease?.expiresAt;
  return undefined;
}
