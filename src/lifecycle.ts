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
import type { Change, LeaseRequest, SeedWrite } from "./backend/port.js";
import { InvalidStateError, LeaseLostError, ValidationError } from "./errors.js";
import type { CruxId, TaskId } from "./ids.js";
import { checkDocumentLength, MAX_DOCUMENT_LENGTH } from "./limits.js";
import type { Lease, StepRecord, TaskRow, TaskState } from "./task-state.js";
import {
  decodeStep,
  decodeStoredCruxErr,
  decodeStoredTask,
  writeCruxErr,
  writeTask,
  writeTaskWithInput,
} from "./wire/codec.js";
import type { Crux, CruxErr, TaskStatus } from "./wire/schema.js";
import { countSteps, editRun, putSteps } from "./wire/splice.js";

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
    fence: 0,
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
  { now, lease }: SeedWrite,
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
    fence: 0,
    lease: null,
    lastError: null,
    idempotencyKey: null,
    cancelRequested: false,
    createdAt: now,
    updatedAt: now,
  };
  const startsRun =
    row.status === "pending" || (row.status === "running" && base.status !== "running");
  const next = {
    ...base,
    ...row,
    lease: row.status === "running" ? base.lease : null,
    cancelRequested: startsRun ? false : base.cancelRequested,
    updatedAt: now,
  };
  return next.status === "running" && next.lease === null && lease !== undefined
    ? withNewLease(next, lease.owner, lease.expiresAt)
    : next;
}

/** The state under a new lease, whose token is the task's next fence value. */
function withNewLease(state: TaskState, owner: string, expiresAt: number): TaskState {
  const fence = state.fence + 1;
  return { ...state, fence, lease: { owner, token: String(fence), expiresAt } };
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
  return { ...overwriteDocument(current, id, row, { now }), lastError: null };
}

/**
 * Take a due pending task: a new lease, one more run, and a mid-run checkpoint to append steps
 * to (a new one, if the task has none: see newCheckpoint).
 */
export function claimTask(state: TaskState, { owner, now, expiresAt }: LeaseRequest): TaskState {
  if (state.status !== "pending") {
    throw new InvalidStateError(`task ${state.id} is ${state.status}, not pending`);
  }
  const leased = withNewLease({ ...state, runs: state.runs + 1 }, owner, expiresAt);
  return rewrite(leased, "running", now, RUN_IN_PROGRESS);
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
export function completeTask(
  state: TaskState,
  token: string,
  valueText: string,
  now: number,
): TaskState {
  fence(state, token);
  if (state.cancelRequested) return failTask(state, token, cancellation(state), now, now);
  return finish(state, "done", okText(valueText), now);
}

/** The checkpoint value `{"Ok":…}` of a run's result, from its JSON. */
export function okText(valueText: string): string {
  return `{"Ok":${valueText}}`;
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
    ? finish(failed, "failed", `{"Err":${failed.lastError}}`, now)
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
    const lastError = writeCruxErr({ kind: "cancelled", reason });
    return finish({ ...state, lastError }, "failed", `{"Err":${lastError}}`, now);
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
 * or extends the steps by one. A document laid out as we write it is edited as text (the steps
 * already there are not decoded again); any other is decoded and re-encoded. A ValidationError
 * at the step's path if one would leave a gap or the document grows past MAX_DOCUMENT_LENGTH.
 */
export function recordSteps(
  state: TaskState,
  token: string,
  steps: readonly StepRecord[],
  now: number,
): TaskState {
  fence(state, token);
  const edited = putSteps(state.data, steps);
  let data: string;
  if (edited === undefined) {
    data = recordDecoded(state, steps);
  } else if (edited.gap !== undefined) {
    throw gap(edited.gap.ordinal, edited.gap.next);
  } else {
    data = edited.data;
  }
  if (data.length > MAX_DOCUMENT_LENGTH)
    checkDocumentLength(data.length, overBudgetPath(state, steps));
  return { ...state, data, updatedAt: now };
}

/** Where steps that take the document past the budget are refused: at the first that does. */
function overBudgetPath(state: TaskState, steps: readonly StepRecord[]): string {
  let n = 1;
  for (; n < steps.length; n++) {
    const edited = putSteps(state.data, steps.slice(0, n));
    if (edited?.gap === undefined && (edited?.data.length ?? 0) > MAX_DOCUMENT_LENGTH) break;
  }
  return steps[n - 1]?.path ?? `$.steps[${n - 1}]`;
}

/** recordSteps for a document not laid out as we write it: decoded, edited, re-encoded. */
function recordDecoded(state: TaskState, records: readonly StepRecord[]): string {
  const task = decodeStoredTask(state.data, state.id);
  const checkpoint = task.checkpoint;
  if (checkpoint === null) throw noCheckpoint(state.id);
  const steps = [...checkpoint.steps];
  for (const { ordinal, data, path } of records) {
    if (ordinal > steps.length) throw gap(ordinal, steps.length);
    steps[ordinal] = decodeStep(data, path ?? "$.step");
  }
  return writeTask({ ...task, checkpoint: { ...checkpoint, steps } });
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

/**
 * A running task without a checkpoint has nowhere to record steps: a claim gives every run
 * one, but the seed's updateStatus (or put) can set a task running without.
 */
export function noCheckpoint(id: TaskId): InvalidStateError {
  return new InvalidStateError(`task ${id} has no checkpoint to record steps in`);
}

function gap(ordinal: number, next: number): ValidationError {
  return new ValidationError("$.ordinal", `step ${ordinal} would leave a gap: the next is ${next}`);
}

/**
 * `change`, refused at `path` when it grows the document, or makes a last error (read beside
 * it), longer than MAX_DOCUMENT_LENGTH.
 */
export function withinBudget(change: Change, path: string): Change {
  return (current) => {
    const next = change(current);
    if (next.data.length > current.data.length) checkDocumentLength(next.data.length, path);
    if (next.lastError !== current.lastError) {
      checkDocumentLength(next.lastError?.length ?? 0, path);
    }
    return next;
  };
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

function finish(state: TaskState, status: "done" | "failed", valueText: string, now: number) {
  return rewrite({ ...state, lease: null }, status, now, {
    valueText,
    finishedAt: now,
    start: true,
  });
}

/** How a transition changes the checkpoint: the run's value and end time. */
export interface RunChange {
  /** The checkpoint's new `value`, as JSON. */
  readonly valueText: string;
  /** Epoch ms, or null while the run has not ended. */
  readonly finishedAt: number | null;
  /** Give a task without a checkpoint a new one (else it keeps none). */
  readonly start: boolean;
}

/** A run that has not ended: no value yet, no end time. */
export const RUN_IN_PROGRESS: RunChange = {
  valueText: '{"Ok":null}',
  finishedAt: null,
  start: true,
};

/**
 * A new status and, with `run`, the checkpoint's value and end time. A document laid out as
 * we write it is edited as text (the run's input and steps are not decoded again); any other
 * is decoded and re-encoded, which gives the same text.
 */
function rewrite(state: TaskState, status: TaskStatus, now: number, run?: RunChange): TaskState {
  return { ...state, status, data: withRun(state, status, run, now), updatedAt: now };
}

/**
 * The document of `state` with `status` and, with `run`, the checkpoint's value and end time;
 * a task without a checkpoint gets a new one started at `startedAt` when `run.start`. Adapters
 * that keep run state beside the document splice it in with this on read.
 */
export function withRun(
  state: Pick<TaskState, "id" | "kind" | "data"> & { readonly status?: TaskStatus },
  status: TaskStatus,
  run: RunChange | undefined,
  startedAt: number,
): string {
  const finishedAtText =
    run?.finishedAt == null ? "null" : JSON.stringify(timestamp(run.finishedAt));
  const data = editRun(state.data, {
    ...(state.status !== undefined && { fromStatusText: `"${state.status}"` }),
    statusText: `"${status}"`,
    ...(run && {
      run: {
        valueText: run.valueText,
        finishedAtText,
        ...(run.start && {
          newCheckpoint: () =>
            newCheckpointText(state.id, state.kind, run.valueText, startedAt, finishedAtText),
        }),
      },
    }),
  });
  if (data !== undefined) return data;
  const task = decodeStoredTask(state.data, state.id);
  const checkpoint =
    task.checkpoint ?? (run?.start ? newCrux(state.id, state.kind, startedAt) : null);
  const canonical = writeTask({ ...task, status, checkpoint });
  if (run === undefined || checkpoint === null) return canonical;
  const edited = editRun(canonical, {
    fromStatusText: `"${status}"`,
    statusText: `"${status}"`,
    run: { valueText: run.valueText, finishedAtText },
  });
  if (edited === undefined) throw new Error("a task document we wrote did not edit as text");
  return edited;
}

/**
 * The checkpoint a task that has none gets when its first run starts. Its id is the task's
 * own ULID (`cruxx_` instead of `task_`): unique as the task id is, and the same however many
 * times a reader splices it in, so an adapter can store the run's start time alone.
 */
function newCheckpointText(
  id: TaskId,
  agent: string,
  valueText: string,
  startedAt: number,
  finishedAtText: string,
): string {
  // As writeCrux lays out newCrux's checkpoint (edit-run.test.ts holds the two to each other),
  // with the run's value and end: a claim makes one per task.
  return `{"id":"${cruxIdOf(id)}","agent":${JSON.stringify(agent)},"value":${valueText},"steps":[],"children":[],"started_at":"${timestamp(startedAt)}","finished_at":${finishedAtText}}`;
}

function newCrux(id: TaskId, agent: string, startedAt: number): Crux {
  return {
    id: cruxIdOf(id),
    agent,
    value: { Ok: null },
    steps: [],
    children: [],
    started_at: timestamp(startedAt),
    finished_at: null,
  };
}

/** The id of the checkpoint a task's first run creates: see newCheckpointText. */
export function cruxIdOf(id: TaskId): CruxId {
  return `cruxx_${id.slice("task_".length)}` as CruxId;
}

/** How many steps the state's document holds. */
export function stepsInDocument(state: Pick<TaskState, "data">): number {
  return countSteps(state.data);
}

/** The last timestamp made: a batch of transitions shares its millisecond. */
let lastTimestamp = { epochMs: Number.NaN, text: "" };

export function timestamp(epochMs: number): string {
  if (epochMs !== lastTimestamp.epochMs) {
    lastTimestamp = { epochMs, text: new Date(epochMs).toISOString() };
  }
  return lastTimestamp.text;
}
