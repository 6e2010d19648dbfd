/**
 * The storage port. The seed's four operations over serialized tasks (`get`, `put`, `list`,
 * `cas`) and the indexed `pending` query, plus the few atomic operations durable execution
 * needs. Adapters store and select; every rule about what a transition does lives in
 * `lifecycle.ts` and reaches an adapter as a synchronous `change` function, which the adapter
 * applies inside one write transaction. The registry depends only on this interface, and every
 * adapter passes the same contract suite.
 */
import type { TaskId } from "../ids.js";
import type { Task, TaskStatus } from "../wire/schema.js";

/** A serialized task and the fields an adapter indexes beside it. */
export interface TaskRow {
  readonly kind: string;
  readonly status: TaskStatus;
  /** The task in the Rust crate's JSON format; `cas` compares it byte for byte. */
  readonly data: string;
}

/** Who may finish a running task: only the holder of the current token. */
export interface Lease {
  readonly owner: string;
  readonly token: string;
  /** Epoch ms; after it, the next claim or sweep may take the task over. */
  readonly expiresAt: number;
}

/** Everything stored about a task: its document and its scheduling state. */
export interface TaskState extends TaskRow {
  readonly id: TaskId;
  readonly priority: number;
  /** Epoch ms before which the task is not claimed. */
  readonly runAt: number;
  /** How many times the task was claimed. */
  readonly runs: number;
  readonly maxAttempts: number;
  /** Present while the task is running. */
  readonly lease: Lease | null;
  /** The last failure, as CruxErr JSON. */
  readonly lastError: string | null;
  readonly idempotencyKey: string | null;
  readonly cancelRequested: boolean;
  readonly createdAt: number;
  readonly updatedAt: number;
  /**
   * The document already decoded, when this state was just made by a transition: readers
   * skip decoding it again. Adapters neither store nor need it.
   */
  readonly decoded?: Task;
}

/** A step's JSON at its position (ordinal) in the run. */
export interface StepRecord {
  readonly ordinal: number;
  readonly data: string;
  /** Where the caller gave it, for a ValidationError: `$.steps[i]` (its index) by default. */
  readonly path?: string;
}

export interface AppendResult {
  readonly appended: boolean;
  /** cancel() was called for the task: its worker should stop at this step. */
  readonly cancelRequested: boolean;
}

/** How the registry's seed API writes through `cas`. */
export interface SeedWrite {
  /** The registry's clock (epoch ms); without it, the adapter's own. */
  readonly now: number;
  /** The lease a task that starts running through this write gets. */
  readonly lease?: Lease;
}

/**
 * A pure, synchronous transition; throwing aborts it with nothing written. In a claim or a
 * sweep, a SerializationError says the task's stored document or last error does not decode:
 * the adapter quarantines that task and goes on with the rest of the batch.
 */
export type Change = (current: TaskState) => TaskState;

/**
 * A task taken out of every queue because its stored document or last error does not decode.
 * Its stored bytes stay as they were; claims, sweeps, pending() and nextWakeAt() skip it, and
 * update() and appendSteps() refuse it, until put, cas or repair gives it a new document.
 */
export interface Quarantined {
  readonly id: TaskId;
  readonly kind: string;
  /** The status it had when it was quarantined. */
  readonly status: TaskStatus;
  /** Why: the decoding error's message. */
  readonly reason: string;
  /** Epoch ms. */
  readonly quarantinedAt: number;
}

/** What a claim or a sweep did. */
export interface Batch {
  /** The tasks it changed, as stored. */
  readonly changed: readonly TaskState[];
  /** The tasks it quarantined instead, their change having thrown a SerializationError. */
  readonly quarantined: readonly Quarantined[];
}

/** A stored document and the task it belongs to. */
export interface StoredDocument {
  readonly id: TaskId;
  readonly data: string;
}

/** Which running tasks a sweep takes back. */
export interface SweepFilter {
  /** Leases that expired by this time (epoch ms). */
  readonly now: number;
  /** Also every lease of this owner, expired or not. */
  readonly owner?: string | undefined;
}

/** Kinds a worker takes: `[]` means every kind. */
export type KindFilter = readonly string[];

/** How a backend tells that another connection may have committed. */
export interface ChangeFeed {
  /**
   * A number that changes whenever another connection commits; a change for any other reason
   * only costs the worker a look for work.
   */
  version(): Promise<number>;
  /**
   * Optional: call `listener` soon after another connection may have committed, so an idle
   * worker need not wait for its next look at `version()`. Spurious calls are fine. Returns
   * the function that stops listening.
   */
  watch?(listener: () => void): () => void;
}

export interface RegistryBackend {
  /** The stored document, or undefined when there is no such task. */
  get(id: TaskId): Promise<string | undefined>;
  /**
   * Insert or overwrite the document, unconditionally; scheduling state is kept. Appended
   * steps are dropped (the new document holds what the task holds), and a quarantined task is
   * released: its new document is read afresh when a queue path next takes it.
   */
  put(id: TaskId, row: TaskRow): Promise<void>;
  /** Ids starting with `prefix` (`""` = all), in id order, which is submit order. */
  list(prefix: string): Promise<TaskId[]>;
  /**
   * Replace the document only if it equals `expected` exactly; false, with nothing written,
   * when it differs or the task is missing. Compare and write are atomic. A status other
   * than `running` ends any lease; see `overwriteDocument` in lifecycle.ts. Like put, it
   * releases a quarantined task.
   */
  cas(id: TaskId, expected: string, next: TaskRow, write?: SeedWrite): Promise<boolean>;
  /**
   * Documents of `pending` tasks of `kind` (`""` = every kind) that are not quarantined,
   * oldest first, from an index; at most `limit` (a positive integer) of them when given.
   */
  pending(kind: string, limit?: number): Promise<StoredDocument[]>;
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
  /** Quarantined tasks of `kinds`, in the order they were quarantined; at most `limit`. */
  quarantined(kinds: KindFilter, limit?: number): Promise<Quarantined[]>;
  /**
   * An operator's way back for a damaged task: as put, with no last error, whatever is stored
   * now (nothing stored is decoded or spliced, so this works however damaged the row is).
   * NotFoundError if missing.
   */
  repair(id: TaskId, row: TaskRow): Promise<void>;

  /**
   * Insert new tasks in one transaction. A task whose idempotency key is already stored (or
   * repeated earlier in the batch) is not written; its slot in the result holds the existing id.
   */
  insert(tasks: readonly TaskState[]): Promise<TaskId[]>;
  /** The task's full state, steps spliced into its document, or undefined. */
  read(id: TaskId): Promise<TaskState | undefined>;
  /**
   * Atomically apply `change` to the task (its document with appended steps spliced in) and
   * store the result. When the document changed, it replaces the appended steps; when only
   * columns changed (a heartbeat), the steps stay where they are. NotFoundError if missing;
   * a SerializationError, with nothing written, if the task is quarantined.
   */
  update(id: TaskId, change: Change): Promise<TaskState>;
  /**
   * Atomically take up to `limit` best due pending tasks of `kinds` (priority, then due time,
   * then id), storing `change` of each, in one transaction; none when none is due. A task
   * whose change throws a SerializationError is quarantined (at `now`) in the same
   * transaction, and the next best due task is taken in its place.
   */
  claim(kinds: KindFilter, now: number, limit: number, change: Change): Promise<Batch>;
  /**
   * Atomically apply `change` to every running task of `kinds` whose lease expired by
   * `filter.now`, or is held by `filter.owner`; one whose change throws a SerializationError
   * is quarantined (at `filter.now`) instead.
   */
  sweep(kinds: KindFilter, filter: SweepFilter, change: Change): Promise<Batch>;
  /**
   * Persist steps of a running task under its lease, as appended rows, in one transaction:
   * a LeaseLostError, with nothing written, unless `token` is the task's current lease. The
   * cost does not grow with the number of steps before them. Writes nothing and says
   * `appended: false` when an ordinal is already inside the stored document (the caller
   * rewrites the document instead); a ValidationError when one would leave a gap or take the
   * document, steps spliced in, past MAX_DOCUMENT_LENGTH (the adapter keeps the appended
   * steps' total length, so that check too costs the same at every step); a
   * SerializationError if the task is quarantined.
   */
  appendSteps(id: TaskId, token: string, steps: readonly StepRecord[]): Promise<AppendResult>;
  /**
   * Epoch ms of the earliest due time or lease expiry later than `after` (the caller's last
   * look), among `kinds` or, if the adapter cannot filter cheaply, among all tasks; quarantined
   * tasks do not count.
   */
  nextWakeAt(kinds: KindFilter, after: number): Promise<number | undefined>;
  /**
   * How idle workers learn of commits by other connections (other processes): work submitted
   * elsewhere. A backend no other connection can write to needs none, and one without it is
   * never polled.
   */
  readonly changes?: ChangeFeed;
  /** Release the storage; later calls fail with a ClosedError. Idempotent. */
  close(): Promise<void>;
}
