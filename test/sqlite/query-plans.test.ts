/**
 * Each statement the SQLite adapter prepares (src/backend/sqlite/statements.ts), explained as
 * SQLite plans it over a realistic file: 20,000 tasks in every state over 3 kinds and 4
 * priorities, some delayed, leases expired and live, appended steps, idempotency keys and a few
 * quarantined rows. Each statement searches the index statements.ts names for it, never
 * scans tasks or sorts into a temporary B-tree; and each index the layout keeps is searched by
 * at least one statement, so an index no query needs fails here.
 *
 * The SQL is the prepared statements' own: `db.prepare` is traced, each statement is run once
 * (and rolled back) with realistic values, and its source is explained with the values it was
 * run with (SQLite's STAT4 plans by bound values once ANALYZE has run).
 */
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { prepareStatements, type Statements } from "../../src/backend/sqlite/statements.js";
import { newTaskId, type TaskId } from "../../src/ids.js";
import { writeStep, writeTask } from "../../src/wire/codec.js";
import type { TaskStatus } from "../../src/wire/schema.js";
import { tempDbPath } from "../support/backends.js";
import { stepRecord } from "../support/crux.js";
import { migrateFile } from "../support/migrate.js";

const T0 = Date.UTC(2030, 0, 1);
const NOW = T0 + 20_000;
const TASKS = 20_000;
const KINDS = ["email", "report", "crawl"] as const;
const STATUSES: readonly TaskStatus[] = [
  ...["pending", "pending", "pending", "pending"],
  ...["running", "running", "done", "done", "done", "failed"],
] as TaskStatus[];

/** A row the statements are run on: its key and its id. */
interface Sample {
  readonly seq: number;
  readonly id: TaskId;
}

/** Fill the file: task i is of kind i % 3 and status STATUSES[i % 10]. */
function fill(db: Database.Database): { running: Sample; pending: Sample } {
  const insert = db.prepare(`insert into tasks (id, kind, status, priority, run_at, runs, fence,
      lease_owner, lease_expires_at, created_at, updated_at, idempotency_key, quarantined_at,
      quarantine_reason, quarantined_status, data)
    values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
  const step = db.prepare("insert into task_steps (task, ordinal, data) values (?, ?, ?)");
  const length = db.prepare("insert into task_steps_length (task, length) values (?, ?)");
  const stepData = writeStep(stepRecord("fetch", 1n, "out"), "$");
  const samples: Partial<Record<"running" | "pending", Sample>> = {};
  db.transaction(() => {
    for (let i = 0; i < TASKS; i++) {
      const id = newTaskId(T0 + i);
      const kind = KINDS[i % KINDS.length] as string;
      const status = STATUSES[i % STATUSES.length] as TaskStatus;
      const running = status === "running";
      // One failed task in 50 is quarantined: its status column reads failed.
      const quarantined = status === "failed" && i % 50 === 9;
      const { lastInsertRowid } = insert.run(
        ...[id, kind, status, i % 4, i % 7 === 0 ? T0 + 60_000 + i : T0 + i],
        ...[running ? 1 : 0, running ? 1 : 0],
        ...(running ? [`worker-${i % 4}`, T0 + 2 * i] : [null, null]),
        ...[T0 + i, T0 + i, i % 5 === 0 ? `key-${i}` : null],
        ...(quarantined ? [NOW, "does not decode", "pending"] : [null, null, null]),
        writeTask({ id, kind, status, input: i, checkpoint: null, attempts: 0 }),
      );
      const seq = Number(lastInsertRowid);
      if (running) {
        for (const ordinal of [0, 1]) step.run(seq, ordinal, stepData);
        length.run(seq, 2 * (stepData.length + 1));
      }
      if (status === "running" || status === "pending") samples[status] ??= { seq, id };
    }
  })();
  const { running, pending } = samples;
  if (running === undefined || pending === undefined) throw new Error("no sample rows");
  return { running, pending };
}

type Name = Exclude<keyof Statements, "dataVersion">;
type Values<K extends Name> = Parameters<Statements[K]["run"]>[0];

/**
 * What each statement searches: an index by name, `tasks.seq` (the table's own key), the
 * primary key of a steps table, or nothing (an insert reads no table).
 */
type Access = "tasks.seq" | "task_steps.pk" | "task_steps_length.task" | (string & {}) | null;

interface Case<K extends Name> {
  readonly values: Values<K>;
  readonly searches: readonly Access[];
  /**
   * A partial index the statement walks whole: allowed only where that index holds just the
   * rows the statement may return, and no index could narrow them further.
   */
  readonly walks?: string;
}

/** Each statement with realistic values and what its plan must search. */
function cases(rows: { running: Sample; pending: Sample }): { [K in Name]: Case<K> } {
  const { running, pending } = rows;
  const claim = { owner: "w", now: NOW, expiresAt: NOW + 30_000, limit: 8, kind: "email" };
  const complete = { id: running.id, fence: 1, value: '{"Ok":1}', now: NOW, extra: 300 };
  const row = {
    seq: running.seq,
    id: running.id,
    kind: "email",
    status: "running",
    priority: 0,
    run_at: T0,
    runs: 1,
    max_attempts: 3,
    fence: 1,
    lease_owner: "w",
    lease_expires_at: NOW + 30_000,
    cancel_requested: 0,
    created_at: T0,
    updated_at: NOW,
    idempotency_key: null,
    last_error: null,
  } as const;
  const whole = { ...row, steps_in_document: 0, run_started_at: null, run_finished_at: null };
  const written = { ...whole, run_value: null, data: "{}" };
  const fresh = { ...written, id: newTaskId(NOW), idempotency_key: "fresh" };
  return {
    read: { values: { id: running.id }, searches: ["tasks_id", "task_steps.pk"] },
    stepsOf: { values: { seq: running.seq }, searches: ["task_steps.pk"] },
    insert: { values: fresh, searches: [null] },
    write: { values: written, searches: ["tasks.seq"] },
    writeSchedule: { values: row, searches: ["tasks.seq"] },
    claimOne: { values: claim, searches: ["tasks.seq", "tasks_claim_kind"] },
    claimUpTo: { values: claim, searches: ["tasks.seq", "tasks_claim_kind"] },
    claimRows: {
      values: { ...claim, seqs: JSON.stringify([pending.seq, pending.seq + 10]) },
      searches: ["tasks.seq"],
    },
    dueOfKind: { values: { kind: "report", now: NOW, limit: 8 }, searches: ["tasks_claim_kind"] },
    firstDueOfKind: { values: { kind: "crawl", now: NOW }, searches: ["tasks_claim_kind"] },
    nextPendingKind: { values: { after: "crawl" }, searches: ["tasks_pending_kind_id"] },
    completeById: {
      values: complete,
      searches: ["tasks_id", "task_steps_length.task"],
    },
    completeBySeq: {
      values: { ...complete, seq: running.seq },
      searches: ["tasks.seq", "task_steps_length.task"],
    },
    lastStep: { values: { seq: running.seq }, searches: ["task_steps.pk"] },
    clearSteps: { values: { seq: running.seq }, searches: ["task_steps.pk"] },
    stepData: { values: { seq: running.seq, ordinal: 1 }, searches: ["task_steps.pk"] },
    appendedLength: { values: { seq: running.seq }, searches: ["task_steps_length.task"] },
    setAppendedLength: { values: { seq: running.seq, length: 10 }, searches: [null] },
    clearAppendedLength: { values: { seq: running.seq }, searches: ["task_steps_length.task"] },
    putStep: { values: { seq: running.seq, ordinal: 2, data: "{}" }, searches: [null] },
    listFrom: { values: { from: "task_01" }, searches: ["tasks_id"] },
    pendingOfKind: { values: { kind: "email", limit: 100 }, searches: ["tasks_pending_kind_id"] },
    quarantine: { values: { seq: pending.seq, reason: "r", at: NOW }, searches: ["tasks.seq"] },
    quarantineClaimed: {
      values: { id: running.id, fence: 1, reason: "r", at: NOW },
      searches: ["tasks_id"],
    },
    release: { values: { seq: pending.seq }, searches: ["tasks.seq"] },
    quarantinedRows: { values: {}, searches: ["tasks_quarantined"] },
    byIdempotencyKey: { values: { key: "key-5" }, searches: ["tasks_idempotency_key"] },
    expired: { values: { now: NOW }, searches: ["tasks_lease_expiry", "task_steps.pk"] },
    // recover(owner) at a worker's restart: every running task (the lease expiry index holds
    // those only, as many as the workers run at once) is expired or its owner's. An index on
    // the owner for this rare path would cost every claim and completion one more write.
    expiredOrOwned: {
      values: { now: NOW, owner: "worker-1" },
      searches: ["task_steps.pk"],
      walks: "tasks_lease_expiry",
    },
    nextPriority: {
      values: { kind: "email", below: Number.MAX_SAFE_INTEGER },
      searches: ["tasks_claim_kind"],
    },
    earliestDue: {
      values: { kind: "email", priority: 2, after: NOW },
      searches: ["tasks_claim_kind"],
    },
    earliestExpiry: { values: { after: NOW }, searches: ["tasks_lease_expiry"] },
  };
}

/** How a plan line names the search of `access`. */
function searchPattern(access: Exclude<Access, null>): RegExp {
  switch (access) {
    case "tasks.seq":
      return /^SEARCH tasks USING INTEGER PRIMARY KEY \(rowid=\?\)$/;
    case "task_steps.pk":
      return /^SEARCH task_steps USING (COVERING )?(INDEX sqlite_autoindex_task_steps_1|PRIMARY KEY) \(task=\?/;
    case "task_steps_length.task":
      return /^SEARCH task_steps_length USING INTEGER PRIMARY KEY \(rowid=\?\)$/;
    default:
      return new RegExp(`^SEARCH tasks USING (COVERING )?INDEX ${access} \\(`);
  }
}

interface Explained {
  readonly source: string;
  readonly plan: readonly string[];
}

/** `db` whose prepared statements note the SQL and values of each run. */
function traced(db: Database.Database): { last: () => { source: string; args: unknown[] } } {
  let last: { source: string; args: unknown[] } | undefined;
  const prepare = db.prepare.bind(db);
  db.prepare = ((source: string) =>
    new Proxy(prepare(source), {
      get(target, key) {
        const member = Reflect.get(target, key, target);
        if (typeof member !== "function") return member;
        if (key !== "run" && key !== "get" && key !== "all" && key !== "iterate") {
          return member.bind(target);
        }
        return (...args: unknown[]) => {
          last = { source, args };
          return member.apply(target, args);
        };
      },
    })) as typeof db.prepare;
  return {
    last: () => {
      if (last === undefined) throw new Error("no statement ran");
      return last;
    },
  };
}

describe("query plans of the SQLite adapter's statements", () => {
  let db: Database.Database;
  let statements: Statements;
  let tracer: ReturnType<typeof traced>;
  let table: ReturnType<typeof cases>;

  beforeAll(async () => {
    const file = tempDbPath();
    new Database(file).close();
    await migrateFile(file);
    db = new Database(file);
    table = cases(fill(db));
    tracer = traced(db);
    statements = prepareStatements(db);
    return () => db.close();
  });

  /** Run the statement once, rolled back, and explain its SQL with the values it ran with. */
  function explain(name: Name): Explained {
    const { values } = table[name];
    const statement = statements[name] as { run(values: object): unknown };
    db.exec("BEGIN");
    try {
      statement.run(values);
    } finally {
      db.exec("ROLLBACK");
    }
    const { source, args } = tracer.last();
    const rows = db.prepare(`EXPLAIN QUERY PLAN ${source}`).all(...args) as { detail: string }[];
    return { source, plan: rows.map((row) => row.detail) };
  }

  const names = () => Object.keys(table) as Name[];

  /** The indexes the file holds (a primary key's own is not one the layout chose). */
  const fileIndexes = () =>
    (
      db
        .prepare("select name from sqlite_master where type = 'index' and sql is not null")
        .all() as { name: string }[]
    ).map((index) => index.name);

  function check(): void {
    const used = new Set<string>();
    for (const name of names()) {
      const { source, plan } = explain(name);
      const why = `${name}: ${source}\n${plan.join("\n")}`;
      const { searches, walks } = table[name];
      for (const access of searches) {
        if (access === null) expect(plan, why).toEqual([]);
        else
          expect(
            plan.filter((line) => searchPattern(access).test(line)),
            why,
          ).not.toEqual([]);
      }
      const walk = walks && `SCAN tasks USING INDEX ${walks}`;
      if (walk !== undefined) expect(plan, why).toContain(walk);
      for (const line of plan.filter((step) => step !== walk)) {
        expect(line, why).not.toMatch(/^SCAN (tasks|task_steps|task_steps_length)\b/);
        expect(line, why).not.toMatch(/TEMP B-TREE/);
        for (const [, index] of line.matchAll(/INDEX (\w+)/g)) used.add(index as string);
      }
    }
    // Each kept index justified by a statement that searches it.
    expect(fileIndexes().filter((index) => !used.has(index))).toEqual([]);
  }

  it("covers every statement that is prepared", () => {
    expect([...names(), "dataVersion"].sort()).toEqual(Object.keys(statements).sort());
  });

  it("each statement searches its index, never scans tasks or sorts; each index is searched", () => {
    check();
  });

  it("the same after ANALYZE, with the planner's statistics", () => {
    db.exec("ANALYZE");
    check();
  });
});
