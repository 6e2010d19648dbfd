/**
 * Group commit: write operations requested in the same tick run in ONE immediate
 * transaction and all resolve after the one commit (and, in `full` durability, the one
 * fsync). Sixty-four concurrent submits cost one commit, not 64. A failing operation rejects
 * alone: the batch is rolled back and run again with each operation in its own savepoint.
 * Savepoints only then, because each one makes SQLite copy every page the operation touches
 * into a statement journal: measured, 14 µs per insert with them against 9 without.
 *
 * While another process holds the write lock the batch waits asynchronously, with jittered
 * backoff, and whatever is requested meanwhile joins it.
 */
import type BetterSqlite3 from "better-sqlite3";

interface PendingWrite {
  readonly operation: () => unknown;
  readonly resolve: (value: unknown) => void;
  readonly reject: (error: unknown) => void;
}

type Outcome =
  | { readonly ok: true; readonly value: unknown }
  | { readonly ok: false; readonly error: unknown };

export interface GroupCommitOptions {
  /** Is this driver error "the database is locked"? */
  readonly isBusy: (error: unknown) => boolean;
  /** How long a batch may wait for the lock before `onTimeout`'s error rejects it. */
  readonly busyTimeoutMs: number;
  /** The error for a batch that waited too long. */
  readonly onTimeout: (cause: unknown) => unknown;
  /** The error a caller sees when the transaction itself (not its operation) fails. */
  readonly translate: (error: unknown) => unknown;
  /** Called after each commit. */
  readonly onCommit?: () => void;
  /**
   * When given, a committed batch resolves only once this resolves (the commit is on disk);
   * the next batch does not wait for it. Its failure rejects the batch, translated.
   */
  readonly durable?: () => Promise<void>;
}

export class GroupCommit {
  readonly #db: BetterSqlite3.Database;
  readonly #options: GroupCommitOptions;
  readonly #begin: BetterSqlite3.Statement;
  readonly #commit: BetterSqlite3.Statement;
  readonly #rollback: BetterSqlite3.Statement;
  readonly #savepoint: BetterSqlite3.Statement;
  readonly #release: BetterSqlite3.Statement;
  readonly #rollbackTo: BetterSqlite3.Statement;
  #queue: PendingWrite[] = [];
  /** Settles when the queue is empty and no batch is running. */
  #drained: Promise<void> = Promise.resolve();
  /** Committed batches waiting for `durable`. */
  readonly #syncing = new Set<Promise<void>>();
  #flushing = false;

  constructor(db: BetterSqlite3.Database, options: GroupCommitOptions) {
    this.#db = db;
    this.#options = options;
    this.#begin = db.prepare("BEGIN IMMEDIATE");
    this.#commit = db.prepare("COMMIT");
    this.#rollback = db.prepare("ROLLBACK");
    this.#savepoint = db.prepare("SAVEPOINT operation");
    this.#release = db.prepare("RELEASE operation");
    this.#rollbackTo = db.prepare("ROLLBACK TO operation");
  }

  /** Run `operation` (synchronous, no awaits) inside the next group transaction. */
  write<T>(operation: () => T): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      this.#queue.push({ operation, resolve: resolve as (value: unknown) => void, reject });
      if (!this.#flushing) {
        this.#flushing = true;
        this.#drained = new Promise((done) => queueMicrotask(() => void this.#flush().then(done)));
      }
    });
  }

  /** Resolves once every requested write has committed (and is durable) or failed. */
  async drained(): Promise<void> {
    await this.#drained;
    await Promise.all(this.#syncing);
  }

  async #flush(): Promise<void> {
    let deadline = Date.now() + this.#options.busyTimeoutMs;
    let delayMs = 1;
    while (this.#queue.length > 0) {
      const batch = this.#queue;
      this.#queue = [];
      let outcomes: Outcome[];
      try {
        outcomes = this.#run(batch);
      } catch (error) {
        if (this.#options.isBusy(error) && Date.now() < deadline) {
          this.#queue = batch.concat(this.#queue); // later requests join the retry
          await new Promise((resolve) => setTimeout(resolve, delayMs * (0.5 + Math.random())));
          delayMs = Math.min(delayMs * 2, 10);
          continue;
        }
        const failure = this.#options.isBusy(error)
          ? this.#options.onTimeout(error)
          : this.#options.translate(error);
        for (const write of batch) write.reject(failure);
        continue;
      }
      this.#settle(batch, outcomes);
      deadline = Date.now() + this.#options.busyTimeoutMs;
      delayMs = 1;
    }
    this.#flushing = false;
  }

  #settle(batch: readonly PendingWrite[], outcomes: readonly Outcome[]): void {
    const settle = () =>
      batch.forEach((write, i) => {
        const outcome = outcomes[i] as Outcome;
        if (outcome.ok) write.resolve(outcome.value);
        else write.reject(outcome.error);
      });
    // Failed writes were rolled back: they have nothing to wait for.
    if (this.#options.durable === undefined || !outcomes.some((o) => o.ok)) {
      settle();
      return;
    }
    const syncing: Promise<void> = this.#options.durable().then(settle, (error) => {
      const failure = this.#options.translate(error);
      for (const write of batch) write.reject(failure);
    });
    this.#syncing.add(syncing);
    void syncing.finally(() => this.#syncing.delete(syncing));
  }

  /** One transaction for the whole batch; throws only if the transaction itself fails. */
  #run(batch: readonly PendingWrite[]): Outcome[] {
    this.#begin.run();
    try {
      let outcomes = this.#together(batch);
      if (outcomes === undefined) {
        // Something failed and everything was rolled back: again, each op on its own.
        this.#begin.run();
        outcomes = batch.map((w) => this.#isolated(w));
      }
      if (this.#db.inTransaction) {
        this.#commit.run();
        this.#options.onCommit?.();
      }
      return outcomes;
    } catch (error) {
      if (this.#db.inTransaction) this.#rollback.run();
      throw error;
    }
  }

  /**
   * Every operation in the open transaction, without savepoints. When one fails the
   * transaction is rolled back: a batch of one is then done (it failed), a larger one
   * (undefined) must run again op by op.
   */
  #together(batch: readonly PendingWrite[]): Outcome[] | undefined {
    const outcomes: Outcome[] = [];
    for (const write of batch) {
      try {
        outcomes.push({ ok: true, value: write.operation() });
      } catch (error) {
        if (this.#options.isBusy(error)) throw error;
        if (this.#db.inTransaction) this.#rollback.run();
        return batch.length === 1 ? [{ ok: false, error }] : undefined;
      }
    }
    return outcomes;
  }

  #isolated(write: PendingWrite): Outcome {
    this.#savepoint.run();
    try {
      const value = write.operation();
      this.#release.run();
      return { ok: true, value };
    } catch (error) {
      if (this.#options.isBusy(error)) throw error;
      this.#rollbackTo.run();
      this.#release.run();
      return { ok: false, error };
    }
  }
}
