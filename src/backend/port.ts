/**
 * The storage port: what every backend must do, and nothing of how one engine does it. The
 * seed's four operations over serialized tasks (`get`, `put`, `list`, `cas`) and the
 * `pending` query, plus the few atomic operations durable execution needs. Adapters store and
 * select; every rule about what a transition does lives in `lifecycle.ts` (the adapter kit,
 * `kit.ts`), which an adapter either applies as a `Change` inside one write transaction or,
 * for the hot transitions that have a port operation of their own (claim, complete), may
 * implement as one statement that writes exactly what the rule writes. The registry depends
 * only on this interface, and every adapter passes the same contract suite.
 */
import type { TaskId } from "../ids.js";
import type {
  KindFilter,
  Quarantined,
  StepRecord,
  StoredDocument,
  SweepFilter,
  TaskRow,
  TaskState,
} from "../task-state.js";
import type { TaskStatus } from "../wire/schema.js";

/**
 * A pure, synchronous transition; throwing aborts it with nothing written. In a sweep, a
 * SerializationError says the task's stored document or last error does not decode: the
 * adapter quarantines that task and goes on with the rest of the batch.
 */
export type Change = (current: TaskState) => TaskState;

/** What a claim or a sweep did. */
export interface Batch {
  /** The tasks it changed, as stored. */
  readonly changed: readonly TaskState[];
  /** The tasks it quarantined instead, their change having thrown a SerializationError. */
  readonly quarantined: readonly Quarantined[];
}

/** The lease a claim gives each task it takes; its token is the task's next fence value. */
export interface LeaseRequest {
  readonly owner: string;
  /** The registry's clock: the claim's time (epoch ms). */
  readonly now: number;
  readonly expiresAt: number;
}

/** How the registry's seed API writes through `cas`. */
export interface SeedWrite {
  /** The registry's clock (epoch ms). */
  readonly now: number;
  /** The lease a task that starts running through this write gets (its token is the next fence). */
  readonly lease?: { readonly owner: string; readonly expiresAt: number };
}

/** How a run ended, as complete() stored it. */
export interface RunEnd {
  readonly kind: string;
  /** `failed` when cancel() had been called for the run: it ends with the cancel's error. */
  readonly status: Extract<TaskStatus, "done" | "failed">;
  /** The stored error (CruxErr JSON) when failed. */
  readonly lastError: string | null;
}

/**
 * Optional: how a backend shared with other connections tells an idle worker that one of them
 * may have committed. A backend without it (one process's memory) is never polled.
 */
export interface ChangeFeed {
  /** A number that changes when another connection commits. */
  version(): Promise<number>;
  /**
   * Optional: call `listener` soon after another connection may have committed, so an idle
   * worker need not wait for its next version poll. Spurious calls are fine. Returns the
   * function that stops listening.
   */
  watch?(listener: () => void): () => void;
}

export interface RegistryBackend {
  /** The stored document, or undefined when there is no such task. */
  get(id: TaskId): Promise<string | undefined>;
  /**
   * Insert or overwrite the document, unconditionally, at the registry's time `now`;
   * scheduling state is kept (see `overwriteDocument`). A quarantined task is released.
   */
  put(id: TaskId, row: TaskRow, now: number): Promise<void>;
  /** Ids starting with `prefix` (`""` = all), in id order, which is submit order. */
  list(prefix: string): Promise<TaskId[]>;
  /**
   * Replace the document only if it equals `expected` exactly; false, with nothing written,
   * when it differs or the task is missing. Compare and write are atomic; the new state is
   * `overwriteDocument`'s. Like put, it releases a quarantined task.
   */
  cas(id: TaskId, expected: string, next: TaskRow, write: SeedWrite): Promise<boolean>;
  /**
   * Documents of `pending` tasks of `kinds` that are not quarantined, in id order, from an
   * index; at most `limit` (a positive integer) of them when given.
   */
  pending(kinds: KindFilter, limit?: number): Promise<StoredDocument[]>;
  /**
   * Quarantine the task if its stored document is still exactly `expected` (one a reader could
   * not decode) and it is not quarantined yet; undefined, with nothing written, otherwise.
   */
  quarantine(
    id: TaskId,
    expected: string,
    reason: string,
    now: number,
  ): Promise<Quarantined | undefined>;
  /**
   * Undo a claim whose task turned out not to decode, and quarantine the task as the pending
   * task it was: if it is still held under `token`, it is quarantined with status `pending`,
   * one run fewer and no lease, its document and steps as they were before the claim.
   * Undefined, with nothing written, otherwise.
   */
  quarantineClaimed(
    id: TaskId,
    token: string,
    reason: string,
    now: number,
  ): Promise<Quarantined | undefined>;
  /** Quarantined tasks of `kinds`, in the order they were quarantined; at most `limit`. */
  quarantined(kinds: KindFilter, limit?: number): Promise<Quarantined[]>;
  /**
   * An operator's way back for a damaged task: `repairDocument`'s state, whatever is stored
   * now (nothing stored is decoded, so this works however damaged the row is). NotFoundError
   * if missing.
   */
  repair(id: TaskId, row: TaskRow, now: number): Promise<void>;

  /**
   * Insert new tasks in one transaction. A task whose idempotency key is already stored (or
   * repeated earlier in the batch) is not written; its slot in the result holds the existing id.
   */
  insert(tasks: readonly TaskState[]): Promise<TaskId[]>;
  /** The task's full state (its document as `get` returns it), or undefined. */
  read(id: TaskId): Promise<TaskState | undefined>;
  /**
   * Atomically apply `change` to the task and store the result. NotFoundError if missing; a
   * SerializationError, with nothing written, if the task is quarantined.
   */
  update(id: TaskId, change: Change): Promise<TaskState>;
  /**
   * Atomically take up to `limit` best due pending tasks of `kinds` (`claimOrder`), each
   * changed as `claimTask` changes it under a lease of `lease`, in one transaction; none when
   * none is due. The adapter need not decode what it claims: the registry does, after the
   * commit, and gives back one that does not decode with `quarantineClaimed`. A task whose
   * claim throws a SerializationError is quarantined instead, in the same transaction, and the
   * next best due task is taken in its place.
   */
  claim(kinds: KindFilter, lease: LeaseRequest, limit: number): Promise<Batch>;
  /**
   * Finish the run as `completeTask` does, with `valueText` (the JSON of the run's value):
   * a LeaseLostError unless `token` holds the lease; a ValidationError at `$.value`, with
   * nothing written, if the document would grow past MAX_DOCUMENT_LENGTH (`withinBudget`); a
   * SerializationError if the task is quarantined.
   */
  complete(id: TaskId, token: string, valueText: string, now: number): Promise<RunEnd>;
  /**
   * Atomically apply `change` to every running task of `kinds` whose lease expired by
   * `filter.now`, or is held by `filter.owner`; one whose change throws a SerializationError
   * is quarantined (at `filter.now`) instead.
   */
  sweep(kinds: KindFilter, filter: SweepFilter, change: Change): Promise<Batch>;
  /**
   * Persist steps of a running task under its lease in one transaction, as `recordSteps`
   * does: each replaces the step at its ordinal or extends the steps by one. A LeaseLostError,
   * with nothing written, unless `token` holds the lease; a ValidationError at a step's
   * `path` when one would leave a gap or take the document past MAX_DOCUMENT_LENGTH; a
   * SerializationError if the task is quarantined. Says whether cancel() was called for the
   * task. Appending a new step should cost the same whatever the number of steps before it.
   */
  appendSteps(
    id: TaskId,
    token: string,
    steps: readonly StepRecord[],
    now: number,
  ): Promise<{ readonly cancelRequested: boolean }>;
  /**
   * Epoch ms of the earliest due time or lease expiry later than `after` (the caller's last
   * look), among `kinds` or, if the adapter cannot filter cheaply, among all tasks; quarantined
   * tasks do not count.
   */
  nextWakeAt(kinds: KindFilter, after: number): Promise<number | undefined>;
  /** Present when other connections can change the store: see ChangeFeed. */
  readonly changes?: ChangeFeed | undefined;
  /** Release the storage; later calls fail with a ClosedError. Idempotent. */
  close(): Promise<void>;
}
