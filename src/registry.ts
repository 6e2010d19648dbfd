/**
 * TaskRegistry: the seed's typed API (submit, get, updateStatus, checkpoint, pending,
 * loadCheckpoint) and durable execution (claim, heartbeat, complete, fail, cancel, retry,
 * recover, work) over any RegistryBackend. Input is validated here, at the boundary; stored
 * documents are decoded here; below, everything is plain typed values.
 */
import type { z } from "zod";
import {
  arrayItems,
  checkKind,
  checkKinds,
  checkLeaseMs,
  checkLeaseOwner,
  checkOwner,
  checkReason,
  checkTaskId,
  checkToken,
  DEFAULT_LEASE_MS,
  encodeInput,
  optionsObject,
  positiveInteger,
  submitOptionsSchema,
} from "./arguments.js";
import type { Change, RegistryBackend, SeedWrite } from "./backend/port.js";
import {
  ClosedError,
  ConflictError,
  hasErrorCode,
  NotFoundError,
  ValidationError,
} from "./errors.js";
import {
  type Listener,
  REGISTRY_EVENT_NAMES,
  RegistryEventEmitter,
  type RegistryEventName,
} from "./events.js";
import { toCruxErr } from "./failure.js";
import { newTaskId, type TaskId } from "./ids.js";
import {
  cancelTask,
  DEFAULT_MAX_ATTEMPTS,
  expireTask,
  failTask,
  heartbeatTask,
  newTaskState,
  releaseTask,
  retryTask,
  SEED_LEASE_OWNER,
  withinBudget,
} from "./lifecycle.js";
import { checkDocumentLength, DEPTH } from "./limits.js";
import {
  type ClaimOptions,
  type FailOptions,
  type PendingOptions,
  type QuarantinedOptions,
  type RecoverOptions,
  type RetryBackoff,
  registrySettings,
  type SubmitOptions,
  type SubmitRequest,
  type TaskRegistryOptions,
} from "./options.js";
import {
  type ClaimedTask,
  type CompleteResult,
  type FailResult,
  type HeartbeatResult,
  type QuarantinedTask,
  type StepResult,
  type TaskRecord,
  toRecord,
} from "./record.js";
import { claimOrder } from "./selection.js";
import type {
  KindFilter,
  Lease,
  Quarantined,
  StoredDocument,
  TaskRow,
  TaskState,
} from "./task-state.js";
import { Wakeup } from "./wakeup.js";
import {
  checkCrux,
  decodeOwnTask,
  decodeStoredCruxErr,
  decodeStoredTask,
  jsonTextAt,
  replaceCheckpoint,
  validate,
  viewTask,
  writeCrux,
  writeStep,
  writeTask,
} from "./wire/codec.js";
import type { Json } from "./wire/json.js";
import {
  type Crux,
  type CruxErr,
  type Step,
  stepSchema,
  TASK_STATUSES,
  type Task,
  type TaskStatus,
  taskSchema,
} from "./wire/schema.js";
import type { StepEntry, WorkerHost } from "./worker/host.js";
import {
  type StopOptions,
  stopTimeoutMs,
  Worker,
  type WorkHandler,
  type WorkOptions,
} from "./worker/worker.js";

export class TaskRegistry {
  readonly #backend: RegistryBackend;
  readonly #casRetries: number;
  readonly #maxInputBytes: number;
  readonly #backoff: RetryBackoff;
  readonly #now: () => number;
  readonly #events = new RegistryEventEmitter();
  /** Wakes this process's idle workers when work becomes due here. */
  readonly #wakeup = new Wakeup();
  /** Workers made by work() and not yet stopped: close() stops them first. */
  readonly #workers = new Set<Worker>();
  #closing: Promise<void> | undefined;

  constructor(backend: RegistryBackend, options: TaskRegistryOptions = {}) {
    this.#backend = backend;
    const settings = registrySettings(options);
    this.#casRetries = settings.casRetries;
    this.#maxInputBytes = settings.maxInputBytes;
    this.#backoff = settings.backoff;
    this.#now = settings.clock;
  }

  // ── The seed's API ─────────────────────────────────────────────────────────────────

  /** Submit a new pending task; returns its id. Nothing is written if anything is invalid. */
  async submit(kind: string, input: unknown, options?: SubmitOptions): Promise<TaskId> {
    const [id] = await this.submitMany([
      options === undefined ? { kind, input } : { kind, input, options },
    ]);
    return id as TaskId;
  }

  /** Submit several tasks in one transaction: all are written, or none. */
  async submitMany(requests: readonly SubmitRequest[]): Promise<TaskId[]> {
    const items = arrayItems(requests, "$", "expected an array of tasks");
    const now = this.#now();
    const states = items.map((request, i) =>
      this.#newState(request, items.length === 1 ? "$" : `$[${i}]`, now),
    );
    const ids = await this.#backend.insert(states);
    states.forEach((state, i) => {
      if (ids[i] === state.id) this.#events.emit("submitted", { id: state.id, kind: state.kind });
    });
    if (states.length > 0) this.#wakeup.notify();
    return ids;
  }

  /** The task, or a NotFoundError. */
  async get(id: string): Promise<Task> {
    const taskId = checkTaskId(id);
    const stored = await this.#backend.get(taskId);
    if (stored === undefined) throw new NotFoundError(taskId);
    return viewTask(decodeStoredTask(stored, taskId));
  }

  /**
   * Set the status (any status may follow any other, as in the seed), with bounded CAS
   * retries. A status other than running ends the task's lease. A task this sets running
   * (from another status) gets a lease owned by `"updateStatus"` that expires after the
   * default lease (30 s), so the sweep takes it back like a dead worker's; cancel() fails it
   * at once. The cancel request of an earlier run is cleared by pending or a new running.
   */
  async updateStatus(id: string, status: TaskStatus): Promise<void> {
    if (!(TASK_STATUSES as readonly unknown[]).includes(status)) {
      throw new ValidationError("$.status", `expected one of ${TASK_STATUSES.join(", ")}`);
    }
    const lease =
      status === "running"
        ? (now: number) => ({ owner: SEED_LEASE_OWNER, expiresAt: now + DEFAULT_LEASE_MS })
        : undefined;
    const taskId = checkTaskId(id);
    await this.#modify(
      taskId,
      (stored) => {
        const task = { ...decodeStoredTask(stored, taskId), status };
        return { kind: task.kind, status, data: writeTask(task) };
      },
      lease,
    );
    if (status === "pending") this.#wakeup.notify();
  }

  /** Store a snapshot of `crux` as the task's checkpoint and count it in `attempts`. */
  async checkpoint(id: string, crux: Crux): Promise<void> {
    const taskId = checkTaskId(id);
    const snapshot = checkCrux(crux, "$.checkpoint", DEPTH.checkpoint);
    // Written once, before any write: this also rejects non-JSON values inside the Crux.
    const text = writeCrux(snapshot, "$.checkpoint", DEPTH.checkpoint);
    await this.#modify(taskId, (stored) => {
      const row = replaceCheckpoint(stored, snapshot, text);
      checkDocumentLength(row.data.length, "$.checkpoint");
      return row;
    });
  }

  /**
   * Pending tasks of `kind` (`""` = every kind), oldest first. A task whose document does not
   * decode is skipped and quarantined; up to `limit` others are still returned.
   */
  async pending(kind = "", options: PendingOptions = {}): Promise<Task[]> {
    if (typeof kind !== "string") throw new ValidationError("$.kind", "expected a string");
    const given = optionsObject(options, ["limit"]).limit;
    const limit = given === undefined ? undefined : positiveInteger(given, "$.limit");
    for (let wanted = limit; ; ) {
      const documents = await this.#backend.pending(kind === "" ? [] : [kind], wanted);
      const tasks: Task[] = [];
      for (const document of documents) {
        try {
          tasks.push(viewTask(decodeStoredTask(document.data, document.id)));
        } catch (error) {
          if (!hasErrorCode(error, "SERIALIZATION")) throw error;
          await this.#quarantine(document, error.message);
        }
      }
      const skipped = documents.length - tasks.length;
      if (
        limit === undefined ||
        wanted === undefined ||
        skipped === 0 ||
        documents.length < wanted ||
        tasks.length >= limit
      ) {
        return tasks.slice(0, limit);
      }
      // Skipped ones took places in a full page: read again, further (past them if they are
      // still there, as on a read-only registry).
      wanted = limit + skipped;
    }
  }

  /** The task's checkpoint, or null; a NotFoundError when the task is missing. */
  async loadCheckpoint(id: string): Promise<Crux | null> {
    return (await this.get(id)).checkpoint;
  }

  // ── Durable execution ──────────────────────────────────────────────────────────────

  /** The task with its scheduling state, or a NotFoundError. */
  async inspect(id: string): Promise<TaskRecord> {
    const taskId = checkTaskId(id);
    const state = await this.#backend.read(taskId);
    if (state === undefined) throw new NotFoundError(taskId);
    return toRecord(state);
  }

  /**
   * Atomically move the best due pending task of `kinds` (`""` or `[]` = any kind) to
   * running under a new lease: higher priority first, then earlier due time, then submit order.
   * Running tasks of `kinds` whose leases expired are taken back first, as recover() does
   * (with its `reclaimed` events), so a crashed holder's work comes back without recover().
   */
  async claim(
    kinds: string | readonly string[],
    options: ClaimOptions,
  ): Promise<ClaimedTask | null> {
    const given = optionsObject(options, ["owner", "leaseMs"]);
    return (await this.claimMany(kinds, { ...(given as ClaimOptions), limit: 1 }))[0] ?? null;
  }

  /** Claim up to `limit` tasks in one transaction, each under its own lease; see claim(). */
  async claimMany(
    kinds: string | readonly string[],
    options: ClaimOptions & { readonly limit: number },
  ): Promise<ClaimedTask[]> {
    const filter = checkKinds(kinds);
    const given = optionsObject(options, ["owner", "leaseMs", "limit"]);
    const owner = checkLeaseOwner(given.owner);
    const leaseMs = checkLeaseMs(given.leaseMs);
    const limit = positiveInteger(given.limit, "$.limit");
    return this.#claim(filter, owner, leaseMs, limit, true);
  }

  /**
   * claimMany() with its arguments checked; `takeOver: false` skips expired leases, for a
   * caller that just swept them.
   */
  async #claim(
    filter: KindFilter,
    owner: string,
    leaseMs: number,
    limit: number,
    takeOver: boolean,
  ): Promise<ClaimedTask[]> {
    const now = this.#now();
    if (takeOver) await this.#reclaim(filter, now);
    const lease = { owner, now, expiresAt: now + leaseMs };
    const claimed: ClaimedTask[] = [];
    // Decoded after the claim's commit, not inside its transaction: one that does not decode
    // is given back to the queue and quarantined, and its place is claimed again.
    for (let wanted = limit; wanted > 0; wanted = limit - claimed.length) {
      const { changed, quarantined } = await this.#backend.claim(filter, lease, wanted);
      this.#reportQuarantined(quarantined);
      let undecodable = 0;
      for (const state of [...changed].sort(claimOrder)) {
        const record = await this.#claimedRecord(state, now);
        if (record === undefined) {
          undecodable++;
          continue;
        }
        this.#events.emit("claimed", { id: state.id, kind: state.kind, owner, runs: state.runs });
        claimed.push(record);
      }
      if (changed.length < wanted || undecodable === 0) break;
    }
    return claimed;
  }

  /** The record of a task just claimed; undefined when it did not decode and was given back. */
  async #claimedRecord(state: TaskState, now: number): Promise<ClaimedTask | undefined> {
    try {
      return toRecord(state, decodeOwnTask) as ClaimedTask;
    } catch (error) {
      if (!hasErrorCode(error, "SERIALIZATION")) throw error;
      const token = (state.lease as Lease).token;
      const given = await this.#backend.quarantineClaimed(state.id, token, error.message, now);
      if (given) this.#reportQuarantined([given]);
      return undefined;
    }
  }

  /** Extend the lease; says whether the task was cancelled meanwhile. LEASE_LOST if not held. */
  async heartbeat(
    id: string,
    token: string,
    options: { leaseMs?: number } = {},
  ): Promise<HeartbeatResult> {
    const leaseMs = checkLeaseMs(optionsObject(options, ["leaseMs"]).leaseMs);
    return this.#heartbeat(checkTaskId(id), checkToken(token), leaseMs);
  }

  async #heartbeat(id: TaskId, token: string, leaseMs: number): Promise<HeartbeatResult> {
    const now = this.#now();
    const state = await this.#backend.update(id, (s) => heartbeatTask(s, token, leaseMs, now));
    return { expiresAt: state.lease?.expiresAt ?? now, cancelRequested: state.cancelRequested };
  }

  /**
   * Finish the run with `value` (stored as `{"Ok": value}`); LEASE_LOST if not held. If
   * cancel() was called for the run, it is failed instead, with the cancel's error (and a
   * `failed` event): the result says which.
   */
  async complete(id: string, token: string, value: unknown = null): Promise<CompleteResult> {
    return this.#complete(checkTaskId(id), checkToken(token), value);
  }

  async #complete(id: TaskId, token: string, value: unknown): Promise<CompleteResult> {
    // Encoded before the write: the backend's transaction holds only the write itself.
    const valueText = jsonTextAt(value, "$.value", DEPTH.result);
    const end = await this.#backend.complete(id, token, valueText, this.#now());
    if (end.status === "done") {
      this.#events.emit("completed", { id, kind: end.kind });
      return { status: "done" };
    }
    return { status: "failed", error: this.#afterFailure({ id, ...end }) };
  }

  /**
   * A failed run: pending again after backoff while runs remain, else failed for good with
   * `{"Err": error}` (at once with `{ final: true }`). `error` is a CruxErr, an Error or a
   * message. LEASE_LOST if not held.
   */
  async fail(
    id: string,
    token: string,
    error: unknown,
    options: FailOptions = {},
  ): Promise<FailResult> {
    const err = toCruxErr(error);
    const final = optionsObject(options, ["final"]).final === true;
    return this.#fail(checkTaskId(id), checkToken(token), err, final);
  }

  async #fail(id: TaskId, token: string, err: CruxErr, final: boolean): Promise<FailResult> {
    const now = this.#now();
    const state = await this.#backend.update(
      id,
      withinBudget(
        (s) => failTask(s, token, err, now, final ? null : now + this.#retryDelay(s.runs)),
        "$.error",
      ),
    );
    this.#afterFailure(state);
    return { status: state.status === "pending" ? "pending" : "failed", runAt: state.runAt };
  }

  /** Give a running task back unfinished (shutting down); it is due again at once. */
  async release(id: string, token: string): Promise<void> {
    return this.#release(checkTaskId(id), checkToken(token));
  }

  async #release(id: TaskId, token: string): Promise<void> {
    const now = this.#now();
    await this.#backend.update(id, (s) => releaseTask(s, token, now));
    this.#wakeup.notify();
  }

  /**
   * Persist step `ordinal` of a running task under its lease: a new step, or a new record of
   * one already stored. Appending a new step costs the same whatever the number of steps
   * before it. Steps are contiguous. Says whether cancel() was called for the task.
   */
  recordStep(id: string, token: string, ordinal: number, step: Step): Promise<StepResult> {
    return this.recordSteps(id, token, [{ ordinal, step }]);
  }

  /** Persist several steps of a running task in one transaction; see recordStep. */
  async recordSteps(id: string, token: string, entries: readonly StepEntry[]): Promise<StepResult> {
    const taskId = checkTaskId(id);
    const lease = checkToken(token);
    const items = arrayItems(entries, "$.steps", "expected an array of { ordinal, step }");
    const valid = items.map((entry, i) => {
      const path = stepPath(items.length, i);
      const { ordinal, step, replayed } = optionsObject(
        (entry ?? null) as (typeof entries)[number],
        ["ordinal", "step", "replayed"],
        path,
        "expected { ordinal, step }",
      );
      if (!Number.isSafeInteger(ordinal) || (ordinal as number) < 0) {
        throw new ValidationError("$.ordinal", "expected a non-negative integer");
      }
      return validEntry({ ordinal: ordinal as number, step, replayed }, path);
    });
    return this.#recordSteps(taskId, lease, valid);
  }

  /** recordSteps(), its arguments checked and its steps validated. */
  async #recordSteps(
    taskId: TaskId,
    lease: string,
    valid: readonly (StepEntry & { readonly path: string; readonly replayed: boolean })[],
  ): Promise<StepResult> {
    const rows = valid.map(({ ordinal, step, path }) => ({
      ordinal,
      data: writeStep(step, path),
      path,
    }));
    const { cancelRequested } = await this.#backend.appendSteps(taskId, lease, rows, this.#now());
    for (const { ordinal, step, replayed } of valid) {
      if (replayed) continue;
      this.#events.emit("step", { id: taskId, name: step.name, ordinal, replayed: false });
    }
    return { cancelRequested };
  }

  /**
   * A pending task is failed at once and never runs; a running one is asked to stop (its
   * worker's AbortSignal fires at the next step or heartbeat). False if already finished.
   */
  async cancel(id: string, reason = "cancelled"): Promise<boolean> {
    checkReason(reason);
    const now = this.#now();
    const seen = { wasRunning: false, changed: false };
    const state = await this.#update(id, (s) => {
      const next = cancelTask(s, reason, now);
      seen.wasRunning = s.status === "running";
      seen.changed = next !== s;
      return next;
    });
    if (seen.changed) {
      this.#events.emit("cancelled", {
        id: state.id,
        kind: state.kind,
        wasRunning: seen.wasRunning,
      });
    }
    return seen.changed;
  }

  /** Put a failed task back: pending now, with a fresh allowance of runs; INVALID_STATE otherwise. */
  async retry(id: string): Promise<void> {
    const now = this.#now();
    const state = await this.#update(id, (s) => retryTask(s, now));
    this.#events.emit("retried", {
      id: state.id,
      kind: state.kind,
      runAt: state.runAt,
      error: null,
    });
    this.#wakeup.notify();
  }

  /**
   * Take back running tasks of `kinds` whose leases expired (and, with `owner`, those leased
   * to it): each is pending again (or failed for good when out of runs). Returns the ones
   * now pending, with their checkpoints. Call it at start-up; workers also do it as they poll.
   */
  async recover(
    kinds: string | readonly string[] = [],
    options: RecoverOptions = {},
  ): Promise<TaskRecord[]> {
    const given = optionsObject(options, ["owner"]).owner;
    const owner = given === undefined ? undefined : checkOwner(given);
    const states = await this.#reclaim(checkKinds(kinds), this.#now(), owner);
    return states.filter((s) => s.status === "pending").map((s) => toRecord(s));
  }

  /**
   * Take back running tasks of `kinds` whose leases expired by `now` (and those leased to
   * `owner`), emitting `reclaimed` for each; returns their new states.
   */
  async #reclaim(kinds: KindFilter, now: number, owner?: string): Promise<readonly TaskState[]> {
    const previous = new Map<TaskId, string>();
    const { changed, quarantined } = await this.#backend.sweep(kinds, { now, owner }, (s) => {
      if (s.lease) previous.set(s.id, s.lease.owner);
      return expireTask(decodable(s), now, s.lease?.owner === owner);
    });
    this.#reportQuarantined(quarantined);
    for (const state of changed) {
      const status = state.status === "pending" ? "pending" : "failed";
      this.#events.emit("reclaimed", {
        id: state.id,
        kind: state.kind,
        previousOwner: previous.get(state.id) ?? "",
        status,
      });
    }
    if (changed.some((s) => s.status === "pending")) this.#wakeup.notify();
    return changed;
  }

  /** Tasks of `kinds` taken out of every queue because they do not decode, oldest first. */
  async quarantined(options: QuarantinedOptions = {}): Promise<QuarantinedTask[]> {
    const given = optionsObject(options, ["kinds", "limit"]);
    const kinds = checkKinds(given.kinds ?? []);
    const limit = given.limit === undefined ? undefined : positiveInteger(given.limit, "$.limit");
    return this.#backend.quarantined(kinds, limit);
  }

  /**
   * Give a damaged task a new document and take it out of quarantine, whatever is stored now:
   * `task` is written as the seed's put writes it (a status other than running ends the
   * lease; other scheduling state is kept), the last error is cleared, and steps appended
   * since the old document was written are dropped. Then the task follows its status.
   */
  async repair(id: string, task: Task): Promise<void> {
    const taskId = checkTaskId(id);
    const next = validate(taskSchema, task, "$.task");
    if (next.id !== taskId) throw new ValidationError("$.task.id", `expected ${taskId}`);
    const data = writeTask(next);
    await this.#backend.repair(taskId, { kind: next.kind, status: next.status, data }, this.#now());
    if (next.status === "pending") this.#wakeup.notify();
  }

  /** The earliest time after `after` when a task of `kinds` falls due or a lease expires. */
  async nextWakeAt(
    kinds: string | readonly string[] = [],
    after = this.#now(),
  ): Promise<number | undefined> {
    return this.#backend.nextWakeAt(checkKinds(kinds), after);
  }

  /**
   * Run `handler` for tasks of `kinds` until the returned worker is stopped, or the registry
   * closed. CLOSED once close() was called.
   */
  work<I = Json>(
    kinds: string | readonly string[],
    handler: WorkHandler<I>,
    options: WorkOptions = {},
  ): Worker {
    if (this.#closing !== undefined) throw new ClosedError();
    if (typeof handler !== "function") {
      throw new ValidationError("$.handler", "expected a function (task, ctx) => result");
    }
    const worker: Worker = new Worker(
      this.#workerHost(),
      checkKinds(kinds),
      handler as WorkHandler<never>,
      options,
      () => this.#workers.delete(worker),
    );
    this.#workers.add(worker);
    return worker;
  }

  /**
   * What a worker needs of the registry: its own calls, which hold values already checked (an
   * id and token from a claim, the worker's checked options), skip the public methods' checks.
   */
  #workerHost(): WorkerHost {
    return {
      events: this.#events,
      wakeup: this.#wakeup,
      changes: this.#backend.changes,
      now: () => this.#now(),
      recover: async (kinds) => {
        await this.#reclaim(kinds, this.#now());
      },
      // A worker sweeps expired leases each round just before it claims.
      claim: (kinds, owner, leaseMs, limit) => this.#claim(kinds, owner, leaseMs, limit, false),
      heartbeat: (id, token, leaseMs) => this.#heartbeat(id, token, leaseMs),
      // What the handler gave is checked, as complete() and fail() check it (the value where
      // it is encoded).
      complete: (id, token, value) => this.#complete(id, token, value),
      fail: async (id, token, error, final) => this.#fail(id, token, toCruxErr(error), final),
      release: (id, token) => this.#release(id, token),
      recordSteps: async (id, token, entries) =>
        this.#recordSteps(
          id,
          token,
          entries.map((entry, i) => validEntry(entry, stepPath(entries.length, i))),
        ),
      nextWakeAt: (kinds, after) => this.#backend.nextWakeAt(kinds, after),
    };
  }

  /** Subscribe to an in-process event; returns the function that unsubscribes. */
  on<E extends RegistryEventName>(name: E, listener: Listener<E>): () => void {
    if (!(REGISTRY_EVENT_NAMES as readonly unknown[]).includes(name)) {
      throw new ValidationError("$.name", `expected one of ${REGISTRY_EVENT_NAMES.join(", ")}`);
    }
    if (typeof listener !== "function") {
      throw new ValidationError("$.listener", "expected a function");
    }
    return this.#events.on(name, listener);
  }

  /** The registry's clock, in epoch ms. */
  now(): number {
    return this.#now();
  }

  /**
   * Stop this registry's running workers, as their stop({ timeoutMs }) does (a worker already
   * stopping keeps its own timeout), then close the backend. Idempotent.
   */
  async close(options: StopOptions = {}): Promise<void> {
    const timeoutMs = stopTimeoutMs(options);
    this.#closing ??= (async () => {
      await Promise.all([...this.#workers].map((worker) => worker.stop({ timeoutMs })));
      await this.#backend.close();
    })();
    return this.#closing;
  }

  #newState(request: unknown, path: string, now: number): TaskState {
    const given = optionsObject(
      (request ?? null) as SubmitRequest,
      ["kind", "input", "options"],
      path,
      "expected { kind, input, options? }",
    );
    const kind = checkKind(given.kind, `${path}.kind`);
    const inputText = encodeInput(given.input, this.#maxInputBytes, `${path}.input`);
    const options: z.output<typeof submitOptionsSchema> =
      given.options === undefined
        ? {}
        : validate(submitOptionsSchema, given.options, `${path}.options`);
    const runAt = options.runAt ?? now + (options.delayMs ?? 0);
    const state = newTaskState(
      {
        id: newTaskId(now),
        kind,
        inputText,
        priority: options.priority ?? 0,
        runAt,
        maxAttempts: options.maxAttempts ?? DEFAULT_MAX_ATTEMPTS,
        idempotencyKey: options.idempotencyKey ?? null,
      },
      now,
    );
    checkDocumentLength(state.data.length, `${path}.input`);
    return state;
  }

  #retryDelay(runs: number): number {
    const exponential = Math.min(
      this.#backoff.maxMs,
      this.#backoff.baseMs * 2 ** Math.max(0, runs - 1),
    );
    return Math.round(exponential * (0.5 + Math.random() / 2));
  }

  /** Emits `retried` or `failed` with the error as stored (cancel() may have chosen it); returns it. */
  #afterFailure(
    state: Pick<TaskState, "id" | "kind" | "status" | "lastError"> & { runAt?: number },
  ): CruxErr {
    const error = decodeStoredCruxErr(state.lastError as string); // every failed run stores one
    if (state.status === "pending") {
      const runAt = state.runAt as number; // a task pending again has its due time
      this.#events.emit("retried", { id: state.id, kind: state.kind, runAt, error });
      this.#wakeup.notify();
    } else {
      this.#events.emit("failed", { id: state.id, kind: state.kind, error });
    }
    return error;
  }

  /** Quarantine a pending task that does not decode (as pending() read it), if one still can. */
  async #quarantine(document: StoredDocument, reason: string): Promise<void> {
    try {
      const quarantined = await this.#backend.quarantine(
        document.id,
        document.data,
        reason,
        this.#now(),
      );
      if (quarantined) this.#reportQuarantined([quarantined]);
    } catch (error) {
      // A read-only registry cannot write it down: it still skips the task.
      if (!hasErrorCode(error, "READ_ONLY")) throw error;
    }
  }

  #reportQuarantined(tasks: readonly Quarantined[]): void {
    for (const { id, kind, status, reason } of tasks) {
      this.#events.emit("quarantined", { id, kind, status, reason });
    }
  }

  #update(id: string, change: Change): Promise<TaskState> {
    return this.#backend.update(checkTaskId(id), change);
  }

  /**
   * The seed's read-modify-CAS loop over the stored document, `casRetries` times at most;
   * `lease(now)` is the lease a task that starts running through it gets.
   */
  async #modify(
    id: TaskId,
    change: (stored: string) => TaskRow,
    lease?: (now: number) => NonNullable<SeedWrite["lease"]>,
  ): Promise<void> {
    for (let attempt = 0; attempt < this.#casRetries; attempt++) {
      const stored = await this.#backend.get(id);
      if (stored === undefined) throw new NotFoundError(id);
      const now = this.#now();
      const write: SeedWrite = lease === undefined ? { now } : { now, lease: lease(now) };
      if (await this.#backend.cas(id, stored, change(stored), write)) return;
    }
    throw new ConflictError(id);
  }
}

/** Where a step entry is named in a ValidationError: `$.step` if it is the only one. */
function stepPath(count: number, index: number): string {
  return count === 1 ? "$.step" : `$.steps[${index}]`;
}

/** A step entry, its step validated at `path`. */
function validEntry(
  entry: { readonly ordinal: number; readonly step: unknown; readonly replayed?: unknown },
  path: string,
): StepEntry & { readonly path: string; readonly replayed: boolean } {
  const step = validate(stepSchema, entry.step, path);
  return { ordinal: entry.ordinal, step, path, replayed: entry.replayed === true };
}

/**
 * The state, once its stored document and last error are checked to decode: inside a sweep,
 * one that does not throws its SerializationError there, and the backend quarantines the task
 * instead of failing every other one (the expiry edits the document only as text).
 */
function decodable(state: TaskState): TaskState {
  decodeStoredTask(state.data, state.id);
  if (state.lastError !== null) decodeStoredCruxErr(state.lastError, state.id);
  return state;
}
