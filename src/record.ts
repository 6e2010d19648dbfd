/** What the TaskRegistry gives back: a task with its scheduling state, and method results. */
import type { Lease, Quarantined, TaskState } from "./task-state.js";
import { decodeStoredCruxErr, decodeStoredTask, viewTask } from "./wire/codec.js";
import type { CruxErr, Task } from "./wire/schema.js";

/** A task taken out of every queue because its stored document or last error does not decode. */
export type QuarantinedTask = Quarantined;

/** A task with its scheduling state. */
export interface TaskRecord {
  readonly task: Task;
  readonly priority: number;
  /** Epoch ms before which it is not claimed. */
  readonly runAt: number;
  /** Times claimed. (The task's `attempts` counts checkpoint() calls, as in the seed.) */
  readonly runs: number;
  readonly maxAttempts: number;
  /** Present while running. */
  readonly lease: Lease | null;
  readonly lastError: CruxErr | null;
  readonly cancelRequested: boolean;
  readonly idempotencyKey: string | null;
  readonly createdAt: number;
  readonly updatedAt: number;
}

export interface ClaimedTask extends TaskRecord {
  readonly lease: Lease;
}

export interface HeartbeatResult {
  readonly expiresAt: number;
  /** cancel() was called: stop and fail the run. */
  readonly cancelRequested: boolean;
}

export interface StepResult {
  /** cancel() was called: stop and fail the run. */
  readonly cancelRequested: boolean;
}

export interface FailResult {
  /** `pending` when it will run again at `runAt`; `failed` when it is failed for good. */
  readonly status: "pending" | "failed";
  readonly runAt: number;
}

/**
 * How complete() ended the run: `done`; or `failed` with the error stored, when cancel() had
 * been called for the run (its error is the cancel's: `{ kind: "cancelled", reason }`).
 */
export type CompleteResult =
  | { readonly status: "done" }
  | { readonly status: "failed"; readonly error: CruxErr };

/**
 * The record a stored state is handed out as: task and last error decoded, with JSON views.
 * `decode` is the schema's by default; a claim hands its handler documents of its own making
 * (see decodeOwnTask).
 */
export function toRecord(
  state: TaskState,
  decode: (document: string, id: string) => Task = decodeStoredTask,
): TaskRecord {
  return {
    task: viewTask(decode(state.data, state.id)),
    priority: state.priority,
    runAt: state.runAt,
    runs: state.runs,
    maxAttempts: state.maxAttempts,
    lease: state.lease,
    lastError: state.lastError === null ? null : decodeStoredCruxErr(state.lastError, state.id),
    cancelRequested: state.cancelRequested,
    idempotencyKey: state.idempotencyKey,
    createdAt: state.createdAt,
    updatedAt: state.updatedAt,
  };
}
