/**
 * The SQLite task backend: the RegistryBackend port over the connection and its statements.
 * Transactions hold only SQL: what a write stores is encoded before it, and what a read
 * returns is decoded (the run state spliced into the document) after its commit.
 */
import { NotFoundError } from "../../errors.js";
import type { TaskId } from "../../ids.js";
import {
  appendedLength,
  canAppend,
  completeTask,
  fence,
  noCheckpoint,
  okText,
  overwriteDocument,
  recordSteps,
  repairDocument,
  withinBudget,
} from "../../lifecycle.js";
import { claimOrder, kindMatches } from "../../selection.js";
import type {
  KindFilter,
  Quarantined,
  StepRecord,
  StoredDocument,
  SweepFilter,
  TaskRow,
  TaskState,
} from "../../task-state.js";
import { taskLayout } from "../../wire/splice.js";
import type {
  Batch,
  Change,
  ChangeFeed,
  LeaseRequest,
  RegistryBackend,
  RunEnd,
  SeedWrite,
} from "../port.js";
import { changeEach, quarantinedError } from "../quarantine.js";
import { SqliteConnection } from "./connection.js";
import type { BetterSqlite3Database } from "./database.js";
import { toRegistryError } from "./errors.js";
import type { SqliteBackendOptions } from "./options.js";
import {
  type Columns,
  documentOf,
  isQuarantined,
  type StoredRow,
  stateOf,
  wholeColumns,
} from "./rows.js";
import { prepareStatements, type Statements } from "./statements.js";
import { WalWatch } from "./wal-watch.js";

const NO_BATCH: Batch = { changed: [], quarantined: [] };

/**
 * What complete()'s one statement allows beyond the value for the run state spliced in: a new
 * checkpoint's members and times (its agent is counted apart), and `finished_at`.
 */
const COMPLETE_MARGIN = 256;

/** The seqs of tasks claimed here and not yet completed: their completion goes by rowid. */
const MAX_REMEMBERED_SEQS = 65_536;

export class SqliteBackend implements RegistryBackend {
  readonly #connection: SqliteConnection;
  readonly #sql: Statements;
  readonly #walWatch: WalWatch;
  readonly #seqs = new Map<TaskId, number>();
  /** Only on a file: nothing else can write an in-memory database. */
  readonly changes: ChangeFeed | undefined;

  private constructor(connection: SqliteConnection) {
    this.#connection = connection;
    this.#sql = prepareStatements(connection.db);
    this.#walWatch = new WalWatch(connection.walPath);
    this.changes = {
      // SQLite's `PRAGMA data_version` moves when another connection commits.
      version: () => this.#connection.run("changes", () => this.#sql.dataVersion.get() as number),
      // The WAL file, which every commit of any process writes to (inotify on Linux).
      watch: (listener) => this.#walWatch.watch(listener),
    };
  }

  /**
   * Open (creating and migrating as needed) the registry in a file, `:memory:`, or a
   * better-sqlite3 Database the application already has. Such a Database is switched to WAL
   * (which stays with the file); in `full` durability its commits fsync on the calling
   * thread, as its own writes need; `close()` leaves it open and puts back its `synchronous`,
   * `busy_timeout`, `query_only` and `wal_autocheckpoint` settings.
   */
  static async open(
    target: string | BetterSqlite3Database,
    options: SqliteBackendOptions = {},
  ): Promise<SqliteBackend> {
    const connection = await SqliteConnection.open(target, options);
    try {
      return new SqliteBackend(connection);
    } catch (error) {
      await connection.close();
      throw toRegistryError(error, "cannot open the registry database");
    }
  }

  get(id: TaskId): Promise<string | undefined> {
    return this.#connection.run("get", () => {
      const row = this.#sql.read.get({ id });
      return row && this.#document(row);
    });
  }

  put(id: TaskId, row: TaskRow, now: number): Promise<void> {
    return this.#connection.transaction("put", () => {
      // Its columns only: the document is replaced, however damaged.
      const stored = this.#sql.read.get({ id });
      const next = overwriteDocument(stored && stateOf(stored, stored.data), id, row, { now });
      if (stored === undefined) this.#sql.insert.run(wholeColumns(next));
      else this.#write(next, stored);
    });
  }

  list(prefix: string): Promise<TaskId[]> {
    return this.#connection.run("list", () => {
      const ids: TaskId[] = [];
      // A range scan from the prefix stops at the first id past it: exact, unlike LIKE,
      // for which `_` in `task_` would be a wildcard.
      for (const { id } of this.#sql.listFrom.iterate({ from: prefix })) {
        if (!id.startsWith(prefix)) break;
        ids.push(id as TaskId);
      }
      return ids;
    });
  }

  cas(id: TaskId, expected: string, next: TaskRow, write: SeedWrite): Promise<boolean> {
    return this.#connection.transaction("cas", () => {
      const stored = this.#sql.read.get({ id });
      if (stored === undefined) return false;
      const current = this.#state(stored);
      if (current.data !== expected) return false;
      this.#write(overwriteDocument(current, id, next, write), stored);
      return true;
    });
  }

  pending(kinds: KindFilter, limit = Number.POSITIVE_INFINITY): Promise<StoredDocument[]> {
    return this.#connection.run("pending", () => {
      const wanted = Number.isFinite(limit) ? limit : -1;
      // One index range per kind (pending tasks have no appended steps), merged in id order.
      const rows = this.#kinds(kinds).flatMap((kind) =>
        this.#sql.pendingOfKind.all({ kind, limit: wanted }),
      );
      if (kinds.length !== 1) rows.sort((a, b) => (a.id < b.id ? -1 : 1));
      return rows.slice(0, limit).map((row) => ({ id: row.id as TaskId, data: documentOf(row) }));
    });
  }

  quarantine(
    id: TaskId,
    expected: string,
    reason: string,
    now: number,
  ): Promise<Quarantined | undefined> {
    return this.#connection.transaction("quarantine", () => {
      const row = this.#sql.read.get({ id });
      if (row === undefined || isQuarantined(row) || this.#document(row) !== expected) {
        return undefined;
      }
      return this.#quarantine(row, reason, now);
    });
  }

  async quarantineClaimed(
    id: TaskId,
    token: string,
    reason: string,
    now: number,
  ): Promise<Quarantined | undefined> {
    const fenceValue = tokenFence(token);
    if (fenceValue === undefined) return undefined;
    const marked = await this.#connection.transaction("quarantine", () =>
      this.#sql.quarantineClaimed.get({ id, fence: fenceValue, reason, at: now }),
    );
    this.#seqs.delete(id);
    return marked && { id, ...marked, reason, quarantinedAt: now };
  }

  quarantined(kinds: KindFilter, limit = Number.POSITIVE_INFINITY): Promise<Quarantined[]> {
    return this.#connection.run("quarantined", () => {
      const found: Quarantined[] = [];
      // Quarantined rows are few: walk their index in order and filter by kind here.
      for (const row of this.#sql.quarantinedRows.iterate({})) {
        if (found.length >= limit) break;
        if (kindMatches(kinds, row.kind)) found.push(row);
      }
      return found;
    });
  }

  repair(id: TaskId, row: TaskRow, now: number): Promise<void> {
    return this.#connection.transaction("repair", () => {
      const stored = this.#sql.read.get({ id });
      if (stored === undefined) throw new NotFoundError(id);
      this.#write(repairDocument(stateOf(stored, stored.data), id, row, now), stored);
    });
  }

  insert(tasks: readonly TaskState[]): Promise<TaskId[]> {
    // Bound before the transaction: it holds only the inserts.
    const rows = tasks.map((task) => wholeColumns(task));
    return this.#connection.transaction("insert", () =>
      rows.map((row) => {
        if (row.idempotency_key !== null) {
          const existing = this.#sql.byIdempotencyKey.get({ key: row.idempotency_key });
          if (existing !== undefined) return existing.id as TaskId;
        }
        this.#sql.insert.run(row);
        return row.id as TaskId;
      }),
    );
  }

  read(id: TaskId): Promise<TaskState | undefined> {
    return this.#connection.run("read", () => {
      const row = this.#sql.read.get({ id });
      return row && this.#state(row);
    });
  }

  update(id: TaskId, change: Change): Promise<TaskState> {
    return this.#connection.transaction("update", () => this.#change(this.#changeable(id), change));
  }

  async claim(kinds: KindFilter, lease: LeaseRequest, limit: number): Promise<Batch> {
    const { now } = lease;
    // Usually an idle worker finds nothing: find that out without taking the write lock.
    if (!(await this.#connection.run("claim", () => this.#anyDue(kinds, now)))) return NO_BATCH;
    const params = { ...lease, limit };
    const rows = await this.#connection.transaction("claim", (): Columns[] => {
      if (kinds.length === 1) {
        const kind = kinds[0] as string;
        return limit === 1
          ? this.#sql.claimOne.all({ ...params, kind })
          : this.#sql.claimUpTo.all({ ...params, kind });
      }
      const best = this.#kinds(kinds)
        .flatMap((kind) => this.#sql.dueOfKind.all({ kind, now, limit }))
        .map((row) => ({ ...row, runAt: row.run_at }))
        .sort(claimOrder)
        .slice(0, limit);
      if (best.length === 0) return [];
      return this.#sql.claimRows.all({ ...params, seqs: JSON.stringify(best.map((r) => r.seq)) });
    });
    // After the commit: the run state is spliced into each document outside the lock.
    const changed = rows.map((row) => {
      if (this.#seqs.size >= MAX_REMEMBERED_SEQS) this.#seqs.clear();
      this.#seqs.set(row.id as TaskId, row.seq);
      return stateOf(row, documentOf(row));
    });
    return { changed, quarantined: [] };
  }

  async complete(id: TaskId, token: string, valueText: string, now: number): Promise<RunEnd> {
    const fenceValue = tokenFence(token);
    const seq = this.#seqs.get(id);
    const params = { id, value: okText(valueText), now, extra: valueText.length };
    const end = await this.#connection.transaction("complete", (): RunEnd => {
      if (fenceValue !== undefined) {
        const bound = { ...params, fence: fenceValue, extra: params.extra + COMPLETE_MARGIN };
        const done =
          seq === undefined
            ? this.#sql.completeById.get(bound)
            : this.#sql.completeBySeq.get({ ...bound, seq });
        if (done !== undefined) return { kind: done.kind, status: "done", lastError: null };
      }
      // Anything but the plain case (a lost lease, a cancel request, a document near the
      // budget) takes the lifecycle's own rule, which says what happens and why.
      const change = withinBudget((s) => completeTask(s, token, valueText, now), "$.value");
      const { kind, status, lastError } = this.#change(this.#changeable(id), change);
      return { kind, status: status === "done" ? "done" : "failed", lastError };
    });
    this.#seqs.delete(id);
    return end;
  }

  /** Whether a claim would find a task: an index-only probe per kind. */
  #anyDue(kinds: KindFilter, now: number): boolean {
    return this.#kinds(kinds).some(
      (kind) => this.#sql.firstDueOfKind.get({ kind, now }) !== undefined,
    );
  }

  /** `kinds`, or for every kind ([]), the kinds that have pending tasks. */
  #kinds(kinds: KindFilter): readonly string[] {
    if (kinds.length > 0) return kinds;
    const found: string[] = [];
    for (let after = ""; ; ) {
      const next = this.#sql.nextPendingKind.get({ after });
      if (next === undefined) return found;
      found.push(next.kind);
      after = next.kind;
    }
  }

  async sweep(kinds: KindFilter, filter: SweepFilter, change: Change): Promise<Batch> {
    const expired = () =>
      (filter.owner === undefined
        ? this.#sql.expired.all({ now: filter.now })
        : this.#sql.expiredOrOwned.all({ now: filter.now, owner: filter.owner })
      ).filter((row) => kindMatches(kinds, row.kind));
    // Usually there is nothing to take back: find that out without taking the write lock.
    if ((await this.#connection.run("sweep", expired)).length === 0) return NO_BATCH;
    return this.#connection.transaction("sweep", () =>
      changeEach(
        Number.POSITIVE_INFINITY,
        expired,
        (row) => this.#change(row, change),
        (row, reason) => this.#quarantine(row, reason, filter.now),
      ),
    );
  }

  appendSteps(
    id: TaskId,
    token: string,
    steps: readonly StepRecord[],
    now: number,
  ): Promise<{ cancelRequested: boolean }> {
    return this.#connection
      .transaction("appendSteps", () => {
        const row = this.#changeable(id);
        const state = stateOf(row, row.data);
        fence(state, token);
        const { seq } = row;
        const last = this.#sql.lastStep.get({ seq })?.last ?? undefined;
        // The document as read, run state spliced in; the steps appended before it are counted apart.
        const document = documentOf(row);
        // The run's first steps: a document in another layout is rewritten in ours by
        // recordSteps, as memory does (appended, they would be spliced into the other layout);
        // one in ours must have a checkpoint to put them in.
        const layout = last === undefined ? taskLayout(document) : undefined;
        if (layout !== undefined && document[layout.checkpoint.start] !== "{") {
          throw noCheckpoint(id);
        }
        const ordinals = steps.map((step) => step.ordinal);
        if (
          (last === undefined && layout === undefined) ||
          !canAppend(row.steps_in_document, last, ordinals)
        ) {
          // A step inside the stored document: the document is rewritten, once for all of them.
          return this.#change(row, (s) => recordSteps(s, token, steps, now));
        }
        const length = appendedLength(
          document.length,
          this.#sql.appendedLength.get({ seq })?.length ?? 0,
          steps,
          // Only a step already appended (at most `last`) is replaced: a rare re-record.
          (ordinal) =>
            last === undefined || ordinal > last
              ? undefined
              : this.#sql.stepData.get({ seq, ordinal })?.data.length,
        );
        for (const { ordinal, data } of steps) this.#sql.putStep.run({ seq, ordinal, data });
        this.#sql.setAppendedLength.run({ seq, length });
        return state;
      })
      .then(({ cancelRequested }) => ({ cancelRequested }));
  }

  /**
   * Index seeks only: the earliest lease expiry, and per kind the earliest due time in each
   * priority (tasks_claim_kind orders by priority first; priorities in use are few).
   */
  nextWakeAt(kinds: KindFilter, after: number): Promise<number | undefined> {
    return this.#connection.run("nextWakeAt", () => {
      let next = this.#sql.earliestExpiry.get({ after })?.at ?? undefined;
      for (const kind of this.#kinds(kinds)) {
        for (let below = Number.MAX_SAFE_INTEGER; ; ) {
          const group = this.#sql.nextPriority.get({ kind, below });
          if (group === undefined) break;
          const { priority } = group;
          const due = this.#sql.earliestDue.get({ kind, priority, after })?.run_at;
          if (due !== undefined && (next === undefined || due < next)) next = due;
          below = priority;
        }
      }
      return next;
    });
  }

  async close(): Promise<void> {
    this.#walWatch.close();
    await this.#connection.close();
  }

  /** The document as readers get it: run state and appended steps spliced in. */
  #document(row: StoredRow): string {
    if (row.has_steps === 0) return documentOf(row);
    return documentOf(
      row,
      this.#sql.stepsOf.all({ seq: row.seq }).map((step) => step.data),
    );
  }

  #state(row: StoredRow): TaskState {
    return stateOf(row, this.#document(row));
  }

  /** The task's row, for a change: NotFoundError if missing, refused if quarantined. */
  #changeable(id: TaskId): StoredRow {
    const row = this.#sql.read.get({ id });
    if (row === undefined) throw new NotFoundError(id);
    if (isQuarantined(row)) throw quarantinedError(id);
    return row;
  }

  /**
   * Store `change` of the task the row holds. A change that keeps the document (a heartbeat,
   * a cancel request) writes columns only; any other writes the document whole.
   */
  #change(row: StoredRow, change: Change): TaskState {
    const current = this.#state(row);
    const next = change(current);
    if (next.data === current.data) {
      this.#sql.writeSchedule.run(wholeColumns(next, row.seq, 0));
      return next;
    }
    return this.#write(next, row);
  }

  /** Quarantine the row as it was read in this transaction. */
  #quarantine(row: StoredRow, reason: string, now: number): Quarantined {
    this.#sql.quarantine.get({ seq: row.seq, reason, at: now });
    return { id: row.id as TaskId, kind: row.kind, status: row.status, reason, quarantinedAt: now };
  }

  /**
   * Store a whole state: its document now holds every step and the run state, so the steps
   * appended to the row and its run columns are dropped. Only a new document (put, cas,
   * repair) reaches a quarantined task here, and it releases the task.
   */
  #write(state: TaskState, row: StoredRow): TaskState {
    const { seq } = row;
    this.#sql.write.run(wholeColumns(state, seq));
    if (row.has_steps !== 0) {
      this.#sql.clearSteps.run({ seq });
      this.#sql.clearAppendedLength.run({ seq });
    }
    if (isQuarantined(row)) this.#sql.release.run({ seq });
    return state;
  }
}

/** The fence a lease token names, or undefined when it names none (it then holds no lease). */
function tokenFence(token: string): number | undefined {
  const fence = Number(token);
  return Number.isSafeInteger(fence) && String(fence) === token ? fence : undefined;
}
