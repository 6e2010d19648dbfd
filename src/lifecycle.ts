/**
 * The lease and retry state machine, as pure functions from one TaskState to the next.
 * Adapters apply them inside one write transaction; the memory adapter and the model-based
 * tests use the very same functions, so there is one definition of every transition.
 *
 *   pending ──claim──▶ running ──complete──▶ done
 *      ▲                 │  ├──fail (runs < maxAttempts)──▶ pending (after backoff)
 *      │                 │  ├──fail (out of runs, cancelled)──▶ failed ──retry──▶ pending
 *      └──release/expire─┘  └──expire (out of runs)──▶ failed
 *   pending ──cancel──▶ failed      running ──cancel──▶ running, cancelRequested
 *   running, cancelRequested ──complete, fail, release or expire──▶ failed for good
 */
import type { Lease, StepRecord, TaskRow, TaskState } from "./backend/port.js";
import { InvalidStateError, LeaseLostError, ValidationError } from "./errors.js";
import { newCruxId, type TaskId } from "./ids.js";
import { checkDocumentLength, MAX_DOCUMENT_LENGTH } from "./limits.js";
import {
  decodeStoredCruxErr,
  decodeStoredTask,
  writeCrux,
  writeCruxErr,
  writeCruxValue,
  writeTask,
  writeTaskWithInput,
} from "./wire/codec.js";
import type { Json } from "./wire/json.js";
import type { Crux, CruxErr, CruxValue, Step, Task, TaskStatus } from "./wire/schema.js";
import { countSteps, editRun } from "./wire/splice.js";

export const DEFAULT_MAX_ATTEMPTS = 3;

/**
 * Owner of the lease a task gets when the seed's `updateStatus(id, "running")` starts it: no
 * worker holds it, so the sweep takes the task back when it expires, and cancel() fails it
 * at once (nobody would notice the request).
 */
export const SEED_LEASE_OWNER = "updateStatus";

export interface NewTask {
  readonly id: TaskId;
  readonly kind: string;
  /** The input, already encoded as JSON text. */
  readonly inputText: string;
  readonly priority: number;
  readonly runAt: number;
  readonly maxAttempts: number;
  readonly idempotencyKey: string | null;
}

export function newTaskState(task: NewTask, now: number): TaskState {
  // Field by field, not by spreading: submitMany builds 100,000 of these at a time.
  return {
    id: task.id,
    kind: task.kind,
    status: "pending",
    data: writeTaskWithInput(
      { id: task.id, kind: task.kind, status: "pending", checkpoint: null, attempts: 0 },
      task.inputText,
    ),
    priority: task.priority,
    runAt: task.runAt,
    runs: 0,
    maxAttempts: task.maxAttempts,
    lease: null,
    lastError: null,
    idempotencyKey: task.idempotencyKey,
    cancelRequested: false,
    createdAt: now,
    updatedAt: now,
  };
}

/**
 * The seed's `put`/`cas`: a new document for the task. Scheduling state is kept; a status
 * other than running ends the lease, since nobody may finish the task under it any more. A
 * task that starts running this way gets `lease` (none without one), so it cannot run
 * forever; one already running keeps its own. A cancel request belongs to the run it was
 * made for: a task put back to pending, or to running from another status, has none.
 */
export function overwriteDocument(
  current: TaskState | undefined,
  id: TaskId,
  row: TaskRow,
  now: number,
  lease?: Lease,
): TaskState {
  if (!row.data.isWellFormed()) {
    // SQLite stores text as UTF-8 and would silently replace a lone surrogate.
    throw new ValidationError("$.data", "the document has a lone surrogate and no UTF-8 form");
  }
  checkDocumentLength(row.data.length, "$.data");
  const base: TaskState = current ?? {
    id,
    kind: row.kind,
    status: row.status,
    data: row.data,
    priority: 0,
    runAt: 0,
    runs: 0,
    maxAttempts: DEFAULT_MAX_ATTEMPTS,
    lease: null,
    lastError: null,
    idempotencyKey: null,
    cancelRequested: false,
    createdAt: now,
    updatedAt: now,
  };
  const startsRun =
    row.status === "pending" || (row.status === "running" && base.status !== "running");
  return {
    ...base,
    ...row,
    lease: row.status === "running" ? (base.lease ?? lease ?? null) : null,
    cancelRequested: startsRun ? false : base.cancelRequested,
    updatedAt: now,
  };
}

/**
 * An operator's new document for a damaged task: written as the seed's put writes it, with no
 * last error (the stored one may be what does not decode).
 */
export function repairDocument(
  current: TaskState,
  id: TaskId,
  row: TaskRow,
  now: number,
): TaskState {
  return { ...overwriteDocument(current, id, row, now), lastError: null };
}

/** Take a due pending task: a new lease, one more run, and a mid-run checkpoint to append steps to. */
export function claimTask(state: TaskState, lease: Lease, now: number): TaskState {
  if (state.status !== "pending") {
    throw new InvalidStateError(`task ${state.id} is ${state.status}, not pending`);
  }
  // Decoded, not edited as text: the claimer needs the task decoded anyway.
  return withDocument({ ...state, runs: state.runs + 1, lease }, "running", now, (task) => ({
    ...task,
    checkpoint: changeRun(task.checkpoint, task.kind, RUN_IN_PROGRESS, now),
  }));
}

/** Extend the lease of the current holder. */
export function heartbeatTask(
  state: TaskState,
  token: string,
  leaseMs: number,
  now: number,
): TaskState {
  const lease = fence(state, token);
  return { ...state, lease: { ...lease, expiresAt: now + leaseMs }, updatedAt: now };
}

/**
 * Finish the run: `{"Ok": value}`, `finished_at`, status done — unless cancel() was called
 * for the run: then it is failed with the cancel's error, as if the holder had failed it.
 */
export function completeTask(state: TaskState, token: string, value: Json, now: number): TaskState {
  fence(state, token);
  if (state.cancelRequested) return failTask(state, token, cancellation(state), now, now);
  return finish(state, "done", { Ok: value }, now);
}

/**
 * A failed run: back to pending at `retryAt` while runs remain, else failed for good (also
 * when the task was cancelled, the error cannot heal by retrying, such as a replay mismatch,
 * or `retryAt` is null: the caller says so).
 */
export function failTask(
  state: TaskState,
  token: string,
  error: CruxErr,
  now: number,
  retryAt: number | null,
): TaskState {
  fence(state, token);
  // A run stopped by cancel() ends with the reason given to cancel().
  const cause = state.cancelRequested && error.kind === "cancelled" ? cancellation(state) : error;
  const failed = { ...state, lastError: writeCruxErr(cause) };
  const final =
    retryAt === null ||
    state.cancelRequested ||
    state.runs >= state.maxAttempts ||
    cause.kind === "replay_mismatch";
  return final
    ? finish(failed, "failed", { Err: cause }, now)
    : rewrite({ ...failed, lease: null, runAt: retryAt }, "pending", now);
}

/** The cancelled CruxErr that cancel() stored for a running task. */
function cancellation(state: TaskState): CruxErr {
  const stored = state.lastError === null ? null : decodeStoredCruxErr(state.lastError, state.id);
  return stored?.kind === "cancelled" ? stored : { kind: "cancelled", reason: "cancelled" };
}

/**
 * Give the task back unfinished (a worker shutting down); it is due again at once — unless it
 * was cancelled meanwhile, and then it is failed for good.
 */
export function releaseTask(state: TaskState, token: string, now: number): TaskState {
  fence(state, token);
  if (state.cancelRequested) return failTask(state, token, cancellation(state), now, now);
  return rewrite({ ...state, lease: null, runAt: now }, "pending", now);
}

/**
 * A lease expired (or, with `force`, its owner says it is dead): retry at once while runs
 * remain, else fail for good.
 */
export function expireTask(state: TaskState, now: number, force = false): TaskState {
  const { lease } = state;
  if (state.status !== "running" || lease === null) return state;
  const expired = lease.expiresAt <= now;
  if (!expired && !force) return state;
  const error = state.cancelRequested ? cancellation(state) : leaseEnded(state, lease, expired);
  return failTask(state, lease.token, error, now, now);
}

/**
 * The error of a run that ended because nobody finished it: it says who held the lease, which
 * run it was, and why it ended, so it reads apart from anything a handler or step throws.
 */
function leaseEnded(state: TaskState, lease: Lease, expired: boolean): CruxErr {
  const run = `run ${state.runs} of ${state.maxAttempts}`;
  const message = !expired
    ? `lease taken back: recover() was told that ${lease.owner} is gone, during ${run}`
    : lease.owner === SEED_LEASE_OWNER
      ? `lease expired: updateStatus() set the task running and nothing finished it before its lease expired at ${timestamp(lease.expiresAt)}`
      : `lease expired: ${lease.owner} stopped renewing its lease during ${run} (its worker crashed, was killed or stalled); it expired at ${timestamp(lease.expiresAt)}`;
  return { kind: "step_failed", step: "", message };
}

/**
 * A pending task never runs; a running one is asked to stop (its worker sees it at the next
 * step) — unless updateStatus() set it running: no worker would see the request, so it is
 * failed at once.
 */
export function cancelTask(state: TaskState, reason: string, now: number): TaskState {
  if (
    state.status === "pending" ||
    (state.status === "running" && state.lease?.owner === SEED_LEASE_OWNER)
  ) {
    return finish(
      { ...state, lastError: writeCruxErr({ kind: "cancelled", reason }) },
      "failed",
      { Err: { kind: "cancelled", reason } },
      now,
    );
  }
  if (state.status === "running" && !state.cancelRequested) {
    // The reason waits in lastError until the run ends; failTask makes it the final error.
    const lastError = writeCruxErr({ kind: "cancelled", reason });
    return { ...state, cancelRequested: true, lastError, updatedAt: now };
  }
  return state;
}

/** Put a failed task back: pending now, with a fresh allowance of runs. */
export function retryTask(state: TaskState, now: number): TaskState {
  if (state.status !== "failed") {
    throw new InvalidStateError(
      `task ${state.id} is ${state.status}; only failed tasks are retried`,
    );
  }
  return rewrite({ ...state, runs: 0, runAt: now, cancelRequested: false }, "pending", now, {
    ...RUN_IN_PROGRESS,
    start: false,
  });
}

/**
 * Record steps of the running task inside its document: each replaces the step at its ordinal,
 * or extends the steps by one.
 */
export function recordSteps(
  state: TaskState,
  token: string,
  entries: readonly { readonly ordinal: number; readonly step: Step }[],
  now: number,
): TaskState {
  fence(state, token);
  return withDocument(state, "running", now, (task) => {
    const checkpoint = task.checkpoint as Crux; // a running task always has one (claimTask)
    const steps = [...checkpoint.steps];
    for (const { ordinal, step } of entries) {
      if (ordinal > steps.length) throw gap(ordinal, steps.length);
      steps[ordinal] = step;
    }
    return { ...task, checkpoint: { ...checkpoint, steps } };
  });
}

/**
 * Whether steps at `ordinals` (in order) can be appended after the `inDocument` steps of the
 * stored document and the appended ones up to `lastAppended`: false when one is inside the
 * document (the caller rewrites it instead). Steps are contiguous: a gap is a ValidationError.
 */
export function canAppend(
  inDocument: number,
  lastAppended: number | undefined,
  ordinals: readonly number[],
): boolean {
  let next = (lastAppended ?? inDocument - 1) + 1;
  for (const ordinal of ordinals) {
    if (ordinal < inDocument) return false;
    if (ordinal > next) throw gap(ordinal, next);
    next = Math.max(next, ordinal + 1);
  }
  return true;
}

/**
 * How long the appended steps (each with its comma) are once `steps` are stored after
 * `appended` units of earlier ones; `stored(ordinal)` is the length of the appended step a new
 * one replaces, if any. A ValidationError, at the first step that takes the document (its
 * `documentLength` units as written, steps spliced in) past MAX_DOCUMENT_LENGTH, if it ends
 * there.
 */
export function appendedLength(
  documentLength: number,
  appended: number,
  steps: readonly StepRecord[],
  stored: (ordinal: number) => number | undefined,
): number {
  const replaced = new Map<number, number>();
  let total = appended;
  let over: StepRecord | undefined;
  for (const step of steps) {
    const before = replaced.get(step.ordinal) ?? stored(step.ordinal);
    total += step.data.length - (before ?? -1);
    replaced.set(step.ordinal, step.data.length);
    if (documentLength + total > MAX_DOCUMENT_LENGTH) over ??= step;
  }
  if (over !== undefined) {
    checkDocumentLength(documentLength + total, over.path ?? `$.steps[${steps.indexOf(over)}]`);
  }
  return total;
}

function gap(ordinal: number, next: number): ValidationError {
  return new ValidationError("$.ordinal", `step ${ordinal} would leave a gap: the next is ${next}`);
}

/** The lease, if `token` holds it; otherwise a LeaseLostError saying why not. */
export function fence(state: TaskState, token: string): Lease {
  if (state.status !== "running" || state.lease === null) {
    throw new LeaseLostError(state.id, `the task is ${state.status}`);
  }
  if (state.lease.token !== token) {
    throw new LeaseLostError(state.id, `the lease now belongs to ${state.lease.owner}`);
  }
  return state.lease;
}

function finish(
  state: TaskState,
  status: "done" | "failed",
  value: Crux["value"],
  now: number,
): TaskState {
  return rewrite({ ...state, lease: null }, status, now, {
    value,
    finishedAt: timestamp(now),
    start: true,
  });
}

/** How a transition changes the checkpoint: the run's value and end time. */
interface RunChange {
  readonly value: CruxValue;
  readonly finishedAt: string | null;
  /** Give a task without a checkpoint a new one (else it keeps none). */
  readonly start: boolean;
}

/** A run that has not ended: no value yet, no end time. */
const RUN_IN_PROGRESS: RunChange = { value: { Ok: null }, finishedAt: null, start: true };

/**
 * A new status and, with `run`, the checkpoint's value and end time. An undecoded document
 * laid out as we write it is edited as text (the run's input and steps are not decoded
 * again); any other is decoded and re-encoded, which gives the same text.
 */
function rewrite(state: TaskState, status: TaskStatus, now: number, run?: RunChange): TaskState {
  if (state.decoded === undefined) {
    const data = editRun(state.data, {
      fromStatusText: `"${state.status}"`,
      statusText: `"${status}"`,
      ...(run && {
        run: {
          valueText: writeCruxValue(run.value, "$.checkpoint.value"),
          finishedAtText: run.finishedAt === null ? "null" : JSON.stringify(run.finishedAt),
          ...(run.start && {
            newCheckpoint: () => writeCrux(changeRun(null, state.kind, run, now), "$.checkpoint"),
          }),
        },
      }),
    });
    if (data !== undefined) return { ...state, status, data, updatedAt: now };
  }
  return withDocument(state, status, now, (task) =>
    run === undefined || (task.checkpoint === null && !run.start)
      ? task
      : { ...task, checkpoint: changeRun(task.checkpoint, task.kind, run, now) },
  );
}

function changeRun(checkpoint: Crux | null, agent: string, run: RunChange, now: number): Crux {
  return {
    ...(checkpoint ?? newCheckpoint(agent, now)),
    value: run.value,
    finished_at: run.finishedAt,
  };
}

/** Re-encode the document with a new status after `edit`; columns and document stay in step. */
function withDocument(
  state: TaskState,
  status: TaskStatus,
  now: number,
  edit: (task: Task) => Task,
): TaskState {
  const task = edit({ ...(state.decoded ?? decodeStoredTask(state.data, state.id)), status });
  return { ...state, status, data: writeTask(task), updatedAt: now, decoded: task };
}

/** How many steps the state's document holds; a transition's own decoding spares the scan. */
export function stepsInDocument(state: TaskState): number {
  if (state.decoded === undefined) return countSteps(state.data);
  return state.decoded.checkpoint?.steps.length ?? 0;
}

/** A new checkpoint of `agent`, for a task that starts its first run. */
function newCheckpoint(agent: string, now: number): Crux {
  return {
    id: newCruxId(now),
    agent,
    value: { Ok: null },
    steps: [],
    children: [],
    started_at: timestamp(now),
    finished_at: null,
  };
}

/** The last timestamp made: a batch of transitions shares its millisecond. */
let lastTimestamp = { epochMs: Number.NaN, text: "" };

export function timestamp(epochMs: number): string {
  if (epochMs !== lastTimestamp.epochMs) {
    lastTimestamp = { epochMs, text: new Date(epochMs).toISOString() };
  }
  return lastTimestamp.text;
}
