/**
 * Every statement the task backend runs, built and typed by Kysely once and prepared once,
 * with the planner choices they rely on. Each index the layout keeps serves a statement here:
 * tasks_id (get, read, list, the fenced writes by id), tasks_claim_kind (claim, its probe,
 * nextWakeAt's due time), tasks_pending_kind_id (pending, the pending kinds), tasks_lease_expiry
 * (sweep, nextWakeAt's expiry), tasks_idempotency_key (insert), tasks_quarantined
 * (quarantined); test/sqlite/query-plans.test.ts holds each statement to its index.
 */
import type Database from "better-sqlite3";
import { type Compilable, type Expression, type SelectQueryBuilder, sql } from "kysely";
import { RUN_IN_PROGRESS } from "../../lifecycle.js";
import { MAX_DOCUMENT_LENGTH } from "../../limits.js";
import type { Quarantined } from "../../task-state.js";
import { PreparedQuery, param } from "./prepared.js";
import {
  COLUMN_NAMES,
  type Columns,
  RUN_COLUMNS,
  type ScheduleColumns,
  type StoredRow,
} from "./rows.js";
import { kyselyFor, type RegistryTables } from "./tables.js";

export type Statements = ReturnType<typeof prepareStatements>;

/** What a claim binds: the lease every task it takes gets. */
export interface ClaimParams {
  readonly owner: string;
  readonly now: number;
  readonly expiresAt: number;
  readonly limit: number;
}

// Literals, not parameters: only then can SQLite prove a query matches a partial index's WHERE.
const PENDING = sql.lit("pending" as const);
const RUNNING = sql.lit("running" as const);

export function prepareStatements(db: Database.Database) {
  const k = kyselyFor(db);
  const prepare = <P extends object, R>(query: Compilable<R>) => new PreparedQuery<P, R>(db, query);
  // A marker per column, bound by name from rows.ts' objects.
  const marked = Object.fromEntries(COLUMN_NAMES.map((name) => [name, param(name)])) as Columns;
  const { seq: _seq, ...insertColumns } = marked;
  const { id: _id, created_at: _created, ...written } = insertColumns;
  const {
    data: _data,
    steps_in_document: _count,
    run_value: _value,
    run_started_at: _started,
    run_finished_at: _finished,
    ...schedule
  } = written;
  const bySeq = param<number>("seq");

  /** Adds `has_steps`: whether task_steps holds rows for the task (an index probe). */
  const withHasSteps = <Q extends SelectQueryBuilder<RegistryTables, "tasks", Columns>>(query: Q) =>
    query.select((eb) =>
      eb
        .exists(
          eb
            .selectFrom("task_steps")
            .select("task_steps.ordinal")
            .whereRef("task_steps.task", "=", "tasks.seq"),
        )
        .as("has_steps"),
    );
  const stored = withHasSteps(k.selectFrom("tasks").select(COLUMN_NAMES));
  /** Due pending tasks of one kind in claim order: a walk of tasks_claim_kind. */
  const due = <Q extends SelectQueryBuilder<RegistryTables, "tasks", object>>(query: Q) =>
    query
      .where("status", "=", PENDING)
      .where("kind", "=", param<string>("kind"))
      // Unary plus hides run_at from the planner's range choice: it then walks the claim
      // index in order and stops at the first due row, instead of sorting every due row
      // (504 µs vs 5 µs per claim with 5,000 pending).
      .where(sql<number>`+${sql.ref("run_at")}`, "<=", param<number>("now"))
      .orderBy("priority", "desc")
      .orderBy("run_at")
      .orderBy("id");
  /** The claim as one statement: lease, run and the run's columns for every row it takes. */
  const claimWhere = (rows: Expression<unknown>) =>
    k
      .updateTable("tasks")
      .set((eb) => ({
        status: RUNNING,
        runs: eb("runs", "+", 1),
        fence: eb("fence", "+", 1),
        lease_owner: param<string>("owner"),
        lease_expires_at: param<number>("expiresAt"),
        // As claimTask writes them: a run in progress.
        run_value: sql.lit(RUN_IN_PROGRESS.valueText),
        run_finished_at: null,
        run_started_at: param<number>("now"),
        updated_at: param<number>("now"),
      }))
      .where("seq", "in", rows as Expression<number>)
      .returning(COLUMN_NAMES);
  /**
   * complete() as one fenced statement, when completeTask need write only run state: the
   * task is running under this fence with no cancel request and no appended steps, and it
   * stays within the document budget however the run state is spliced in (UTF-8 bytes are
   * never fewer than UTF-16 units; `extra` bounds the value and a new checkpoint, whose agent
   * is the kind as JSON: up to 6 units a byte, `\u0001`). Otherwise
   * no row changes, and the caller applies completeTask itself.
   */
  const complete = k
    .updateTable("tasks")
    .set((eb) => ({
      status: sql.lit("done"),
      run_value: param<string>("value"),
      run_finished_at: param<number>("now"),
      run_started_at: eb.fn.coalesce("run_started_at", sql.val(param<number>("now"))),
      lease_owner: null,
      lease_expires_at: null,
      updated_at: param<number>("now"),
    }))
    .where("fence", "=", param<number>("fence"))
    .where("status", "=", RUNNING)
    // A running task with no lease (the seed's put set it running) is held by no token.
    .where("lease_owner", "is not", null)
    .where("lease_expires_at", "is not", null)
    .where("cancel_requested", "=", 0)
    .where(
      sql<number>`octet_length(data) + 6 * octet_length(kind) + ${param<number>("extra")}`,
      "<=",
      MAX_DOCUMENT_LENGTH,
    )
    // A run that appended steps ends by folding them into its document (completeTask's whole
    // write): stored once, in the document, as before the run (W6's bytes).
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(selectFrom("task_steps_length").select("task").whereRef("task", "=", "tasks.seq")),
      ),
    )
    .returning("kind");
  const runColumns = Object.fromEntries(RUN_COLUMNS.map((name) => [name, null]));

  // Prepared once: db.pragma() prepares its statement on every call, and idle workers ask often.
  // Typed by its one use: the emitted declarations cannot name better-sqlite3's Statement.
  const dataVersion: { get(): unknown } = db.prepare("PRAGMA data_version").pluck();
  return {
    dataVersion,
    read: prepare<{ id: string }, StoredRow>(
      stored.select(["quarantined_at", "quarantined_status"]).where("id", "=", param<string>("id")),
    ),
    stepsOf: prepare<{ seq: number }, { data: string }>(
      k.selectFrom("task_steps").select("data").where("task", "=", bySeq).orderBy("ordinal"),
    ),
    insert: prepare<Columns, never>(k.insertInto("tasks").values(insertColumns)),
    /** A whole document, its run state folded in (rows.ts' wholeColumns). */
    write: prepare<Columns, never>(
      k
        .updateTable("tasks")
        .set({ ...written, ...runColumns })
        .where("seq", "=", bySeq),
    ),
    /** Columns only: the document, its run state and appended steps stay. */
    writeSchedule: prepare<ScheduleColumns, never>(
      k.updateTable("tasks").set(schedule).where("seq", "=", bySeq),
    ),
    claimOne: prepare<ClaimParams & { kind: string }, Columns>(
      // A literal LIMIT 1: with a bound limit SQLite takes 15 µs instead of 5 for the same walk.
      claimWhere(due(k.selectFrom("tasks").select("seq")).limit(sql.lit(1))),
    ),
    claimUpTo: prepare<ClaimParams & { kind: string }, Columns>(
      claimWhere(due(k.selectFrom("tasks").select("seq")).limit(param<number>("limit"))),
    ),
    /** Several kinds: their best rows are chosen first (dueOfKind, merged in claim order). */
    claimRows: prepare<ClaimParams & { seqs: string }, Columns>(
      claimWhere(sql<number>`(select value from json_each(${param<string>("seqs")}))`),
    ),
    dueOfKind: prepare<
      { kind: string; now: number; limit: number },
      Pick<Columns, "seq" | "id" | "priority" | "run_at">
    >(
      due(k.selectFrom("tasks").select(["seq", "id", "priority", "run_at"])).limit(
        param<number>("limit"),
      ),
    ),
    firstDueOfKind: prepare<{ kind: string; now: number }, { seq: number }>(
      due(k.selectFrom("tasks").select("seq")).limit(sql.lit(1)),
    ),
    /** The next kind (after `after`, in order) with a pending task: one seek per kind. */
    nextPendingKind: prepare<{ after: string }, { kind: string }>(
      k
        .selectFrom("tasks")
        .select("kind")
        .where("status", "=", PENDING)
        .where("kind", ">", param<string>("after"))
        .orderBy("kind")
        .limit(sql.lit(1)),
    ),
    completeById: prepare<
      { id: string; fence: number; value: string; now: number; extra: number },
      { kind: string }
    >(complete.where("id", "=", param<string>("id"))),
    /** By rowid, once a claim told the task's seq: the id is still compared. */
    completeBySeq: prepare<
      { seq: number; id: string; fence: number; value: string; now: number; extra: number },
      { kind: string }
    >(complete.where("seq", "=", bySeq).where("id", "=", param<string>("id"))),
    lastStep: prepare<{ seq: number }, { last: number | null }>(
      k
        .selectFrom("task_steps")
        .select((eb) => eb.fn.max("ordinal").as("last"))
        .where("task", "=", bySeq),
    ),
    clearSteps: prepare<{ seq: number }, never>(
      k.deleteFrom("task_steps").where("task", "=", bySeq),
    ),
    // The step itself: SQLite's length() counts code points, the budget UTF-16 units.
    stepData: prepare<{ seq: number; ordinal: number }, { data: string }>(
      k
        .selectFrom("task_steps")
        .select("data")
        .where("task", "=", bySeq)
        .where("ordinal", "=", param<number>("ordinal")),
    ),
    appendedLength: prepare<{ seq: number }, { length: number }>(
      k.selectFrom("task_steps_length").select("length").where("task", "=", bySeq),
    ),
    setAppendedLength: prepare<{ seq: number; length: number }, never>(
      k
        .insertInto("task_steps_length")
        .values({ task: bySeq, length: param("length") })
        .onConflict((oc) =>
          oc.column("task").doUpdateSet((eb) => ({ length: eb.ref("excluded.length") })),
        ),
    ),
    clearAppendedLength: prepare<{ seq: number }, never>(
      k.deleteFrom("task_steps_length").where("task", "=", bySeq),
    ),
    putStep: prepare<{ seq: number; ordinal: number; data: string }, never>(
      k
        .insertInto("task_steps")
        .values({ task: bySeq, ordinal: param("ordinal"), data: param("data") })
        .onConflict((oc) =>
          oc.columns(["task", "ordinal"]).doUpdateSet((eb) => ({ data: eb.ref("excluded.data") })),
        ),
    ),
    listFrom: prepare<{ from: string }, { id: string }>(
      k.selectFrom("tasks").select("id").where("id", ">=", param<string>("from")).orderBy("id"),
    ),
    pendingOfKind: prepare<{ kind: string; limit: number }, Columns>(
      k
        .selectFrom("tasks")
        .select(COLUMN_NAMES)
        .where("status", "=", PENDING)
        .where("kind", "=", param<string>("kind"))
        .orderBy("id")
        .limit(param<number>("limit")),
    ),
    // Its status column becomes `failed`, which no queue index holds; its own is kept.
    quarantine: prepare<
      { seq: number; reason: string; at: number },
      Pick<Quarantined, "kind" | "status">
    >(
      k
        .updateTable("tasks")
        .set((eb) => ({
          status: sql.lit("failed"),
          quarantined_status: eb.ref("status"),
          quarantine_reason: param<string>("reason"),
          quarantined_at: param<number>("at"),
        }))
        .where("seq", "=", bySeq)
        .where("quarantined_at", "is", null)
        .returning(["kind", "quarantined_status as status"]),
    ),
    /** quarantineClaimed: the claim undone (its run, its lease), then quarantined as pending. */
    quarantineClaimed: prepare<
      { id: string; fence: number; reason: string; at: number },
      Pick<Quarantined, "kind" | "status">
    >(
      k
        .updateTable("tasks")
        .set((eb) => ({
          status: sql.lit("failed"),
          quarantined_status: PENDING,
          runs: eb("runs", "-", 1),
          lease_owner: null,
          lease_expires_at: null,
          quarantine_reason: param<string>("reason"),
          quarantined_at: param<number>("at"),
        }))
        .where("id", "=", param<string>("id"))
        .where("fence", "=", param<number>("fence"))
        .where("status", "=", RUNNING)
        .where("lease_owner", "is not", null)
        .where("lease_expires_at", "is not", null)
        .where("quarantined_at", "is", null)
        .returning(["kind", "quarantined_status as status"]),
    ),
    release: prepare<{ seq: number }, never>(
      k
        .updateTable("tasks")
        .set({ quarantined_at: null, quarantine_reason: null, quarantined_status: null })
        .where("seq", "=", bySeq),
    ),
    quarantinedRows: prepare<Record<string, never>, Quarantined>(
      k
        .selectFrom("tasks")
        .select([
          "id",
          "kind",
          "quarantined_status as status",
          "quarantine_reason as reason",
          "quarantined_at as quarantinedAt",
        ])
        .where("quarantined_at", "is not", null)
        .orderBy("quarantined_at")
        .orderBy("id"),
    ),
    byIdempotencyKey: prepare<{ key: string }, { id: string }>(
      k.selectFrom("tasks").select("id").where("idempotency_key", "=", param<string>("key")),
    ),
    expired: prepare<{ now: number }, StoredRow>(
      stored
        .where("status", "=", RUNNING)
        .where("lease_expires_at", "<=", param<number>("now"))
        .orderBy("lease_expires_at"),
    ),
    expiredOrOwned: prepare<{ now: number; owner: string }, StoredRow>(
      stored
        .where("status", "=", RUNNING)
        .where((eb) =>
          eb.or([
            eb("lease_expires_at", "<=", param<number>("now")),
            eb("lease_owner", "=", param<string>("owner")),
          ]),
        )
        .orderBy("lease_expires_at"),
    ),
    /** The highest priority below `below` among a kind's pending tasks: one seek. */
    nextPriority: prepare<{ kind: string; below: number }, { priority: number }>(
      k
        .selectFrom("tasks")
        .select("priority")
        .where("status", "=", PENDING)
        .where("kind", "=", param<string>("kind"))
        .where("priority", "<", param<number>("below"))
        .orderBy("priority", "desc")
        .limit(sql.lit(1)),
    ),
    /** The earliest due time after `after` within one priority of a kind: one seek. */
    earliestDue: prepare<{ kind: string; priority: number; after: number }, { run_at: number }>(
      k
        .selectFrom("tasks")
        .select("run_at")
        .where("status", "=", PENDING)
        .where("kind", "=", param<string>("kind"))
        .where("priority", "=", param<number>("priority"))
        .where("run_at", ">", param<number>("after"))
        .orderBy("priority", "desc")
        .orderBy("run_at")
        .limit(sql.lit(1)),
    ),
    earliestExpiry: prepare<{ after: number }, { at: number | null }>(
      k
        .selectFrom("tasks")
        .select((eb) => eb.fn.min("lease_expires_at").as("at"))
        .where("status", "=", RUNNING)
        .where("lease_expires_at", ">", param<number>("after")),
    ),
  };
}
