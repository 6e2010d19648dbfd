/**
 * Rows damaged by raw SQL on a real SQLite file, in every state — pending, running under an
 * expired lease (with appended steps) and under a live one, failed — and a stored last error
 * that does not decode: a worker still drains every other task of the kind; claim, claimMany,
 * pending and recover keep serving; each damaged row on a queue path is quarantined once, its
 * bytes (document, last error, appended steps) unchanged; get names it in SERIALIZATION.
 * Also: the migration that adds quarantine to an existing file, and the claim probe's plan.
 */
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import type { RegistryEvents } from "../../src/events.js";
import { newTaskId, type TaskId } from "../../src/ids.js";
import { openRegistry } from "../../src/open.js";
import { TaskRegistry } from "../../src/registry.js";
import { writeTask } from "../../src/wire/codec.js";
import { identityHash } from "../../src/wire/hash.js";
import { tempDbPath, withDb } from "../support/backends.js";
import { stepRecord } from "../support/crux.js";
import { drain } from "../support/drain.js";
import { fileBefore, migrateFile } from "../support/migrate.js";
import { rejection } from "../support/rejection.js";

const T0 = Date.UTC(2030, 0, 1);

/** Everything stored about a task, byte for byte: its row's document and last error, its steps. */
function storedBytes(file: string, id: TaskId): unknown {
  return withDb(file, (db) => ({
    row: db.prepare("select data, last_error from tasks where id = ?").get(id),
    steps: db
      .prepare(
        "select ordinal, data from task_steps where task = (select seq from tasks where id = ?) order by 1",
      )
      .all(id),
  }));
}

interface QuarantineColumns {
  readonly id: string;
  /** The status column: `failed`, which no queue index holds. */
  readonly status: string;
  readonly was: string;
  readonly reason: string;
  readonly at: number;
}

function quarantineColumns(file: string): QuarantineColumns[] {
  return withDb(
    file,
    (db) =>
      db
        .prepare(
          "select id, status, quarantined_status as was, quarantine_reason as reason, quarantined_at as at from tasks where quarantined_at is not null order by id",
        )
        .all() as QuarantineColumns[],
  );
}

/** The indexes of the file, by name. */
function indexes(file: string): Record<string, string> {
  return withDb(file, (db) =>
    Object.fromEntries(
      (
        db
          .prepare("select name, sql from sqlite_master where type = 'index' and sql is not null")
          .all() as { name: string; sql: string }[]
      ).map((index) => [index.name, index.sql]),
    ),
  );
}

const registries: TaskRegistry[] = [];
afterEach(async () => {
  for (const registry of registries.splice(0)) await registry.close();
});

/** A registry on `file` whose clock the test moves, recording its quarantined events. */
async function open(file: string, clock: { now: number }) {
  const registry = new TaskRegistry(await SqliteBackend.open(file), { clock: () => clock.now });
  registries.push(registry);
  const events: RegistryEvents["quarantined"][] = [];
  registry.on("quarantined", (event) => events.push(event));
  return { registry, events };
}

interface DamagedIds {
  /** Pending, its document truncated. */
  readonly pending: TaskId;
  /** Pending, a document that decodes and a last error that does not. */
  readonly badLastError: TaskId;
  /** Running under a lease that has expired, with steps appended that no longer splice in. */
  readonly expired: TaskId;
  /** Running under a live lease, a status that is not a status. */
  readonly live: TaskId;
  /** Failed for good, its document and last error replaced. */
  readonly failed: TaskId;
  /** 40 more `job` tasks, pending, undamaged; 5 `other` ones follow them. */
  readonly good: readonly TaskId[];
}

/** A file with a damaged row in every state, made by the registry and then by raw SQL. */
async function damagedFile(file: string, clock: { now: number }): Promise<DamagedIds> {
  const registry = await openRegistry(file, { clock: () => clock.now });
  const [pending, badLastError] = (await registry.submitMany([
    { kind: "job", input: "pending" },
    { kind: "job", input: "last error" },
  ])) as [TaskId, TaskId];
  // Claimed first, in this order, by priority.
  const expired = await registry.submit("job", "expired", { priority: 3 });
  const live = await registry.submit("job", "live", { priority: 2 });
  const failed = await registry.submit("job", "failed", { priority: 1, maxAttempts: 1 });
  const good = await registry.submitMany(
    Array.from({ length: 40 }, (_, i) => ({ kind: "job", input: i })),
  );
  await registry.submitMany(Array.from({ length: 5 }, (_, i) => ({ kind: "other", input: i })));

  const dead = await registry.claim("job", { owner: "dead", leaseMs: 1000 });
  expect(dead?.task.id).toBe(expired);
  for (const ordinal of [0, 1]) {
    const name = `s${ordinal}`;
    const step = stepRecord(name, identityHash(name, ordinal), ordinal);
    await registry.recordStep(expired, dead?.lease.token as string, ordinal, step);
  }
  expect((await registry.claim("job", { owner: "alive", leaseMs: 60_000 }))?.task.id).toBe(live);
  const doomed = await registry.claim("job", { owner: "w" });
  expect(doomed?.task.id).toBe(failed);
  await registry.fail(failed, doomed?.lease.token as string, "for good");
  await registry.close();

  withDb(file, (db) => {
    const data = (id: TaskId) =>
      (db.prepare("select data from tasks where id = ?").get(id) as { data: string }).data;
    const setData = db.prepare("update tasks set data = ? where id = ?");
    const setLastError = db.prepare("update tasks set last_error = ? where id = ?");
    setData.run(data(pending).slice(0, 30), pending);
    setLastError.run('{"kind":', badLastError);
    setData.run(data(expired).slice(0, 60), expired);
    // The stored document's own status, whichever it holds: the run's is in the status column.
    setData.run(data(live).replace(/"status":"[a-z]+"/, '"status":1'), live);
    setData.run("{}", failed);
    setLastError.run("x", failed);
  });
  expect(storedBytes(file, expired)).toMatchObject({ steps: [{ ordinal: 0 }, { ordinal: 1 }] });
  return { pending, badLastError, expired, live, failed, good };
}

describe("rows damaged by raw SQL on a SQLite file", () => {
  it("a worker drains every other task of the kind; each damaged row costs only itself", async () => {
    const file = tempDbPath();
    const clock = { now: T0 };
    const ids = await damagedFile(file, clock);
    const damaged = [ids.pending, ids.badLastError, ids.expired, ids.live, ids.failed];
    const before = damaged.map((id) => storedBytes(file, id));
    clock.now += 1000; // the dead worker's lease has expired; the live one's has not

    const { registry, events } = await open(file, clock);
    const { completed, errors } = await drain(registry, "job", ids.good.length);

    expect([...completed].sort()).toEqual([...ids.good].sort());
    expect(errors).toEqual([]);
    // The rows on a queue path, once each; the live lease and the failed row are not on one.
    const onPaths = [ids.pending, ids.badLastError, ids.expired];
    expect(events.map((e) => e.id).sort()).toEqual([...onPaths].sort());
    expect(events.find((e) => e.id === ids.expired)).toMatchObject({ status: "running" });
    const was = {
      [ids.pending]: "pending",
      [ids.badLastError]: "pending",
      [ids.expired]: "running",
    };
    expect(quarantineColumns(file).map((q) => q.id)).toEqual([...onPaths].sort());
    for (const q of quarantineColumns(file)) {
      expect(q).toMatchObject({ status: "failed", was: was[q.id], at: clock.now });
      expect(q.reason).toContain(q.id);
    }
    expect(damaged.map((id) => storedBytes(file, id))).toEqual(before);

    for (const id of [ids.pending, ids.expired, ids.live, ids.failed]) {
      const error = await rejection(registry.get(id));
      expect(error.code).toBe("SERIALIZATION");
      expect(error.message).toContain(id);
    }
    const inspected = await rejection(registry.inspect(ids.badLastError));
    expect(inspected).toMatchObject({
      code: "SERIALIZATION",
      message: expect.stringContaining(ids.badLastError),
    });

    // The live lease ends: its owner's restart takes back its leases, and the damaged one is
    // quarantined instead, once, whichever registry notices.
    const other = await open(file, clock);
    expect(await other.registry.recover("job", { owner: "alive" })).toEqual([]);
    expect(await registry.recover("job", { owner: "alive" })).toEqual([]);
    clock.now += 60_000;
    expect(await registry.recover()).toEqual([]);
    expect([...events, ...other.events].map((e) => e.id).sort()).toEqual(
      [...onPaths, ids.live].sort(),
    );
    expect(damaged.map((id) => storedBytes(file, id))).toEqual(before);
  });

  it("claim, claimMany, pending and recover keep serving the others", async () => {
    const file = tempDbPath();
    const clock = { now: T0 };
    const ids = await damagedFile(file, clock);
    clock.now += 1000;
    const { registry, events } = await open(file, clock);

    // Oldest first. pending() reads documents only: the damaged last error is noticed by the
    // claim that would take its task.
    const listed = await registry.pending("job", { limit: 3 });
    expect(listed.map((t) => t.id)).toEqual([ids.badLastError, ...ids.good.slice(0, 2)]);
    expect(events.map((e) => e.id)).toEqual([ids.pending]);
    // A claim first takes over expired leases: the damaged expired one is quarantined there.
    const one = await registry.claim("job", { owner: "w" });
    expect(one?.task.id).toBe(ids.good[0]);
    const noticed = [ids.pending, ids.expired, ids.badLastError];
    expect(events.map((e) => e.id)).toEqual(noticed);
    const many = await registry.claimMany(["job", "other"], { owner: "w", limit: 5 });
    expect(many.map((c) => c.task.id)).toEqual(ids.good.slice(1, 6));
    const recovered = await registry.recover("job");
    expect(recovered).toEqual([]);
    expect(events.map((e) => e.id)).toEqual(noticed);
    expect((await registry.pending("")).length).toBe(ids.good.length - 6 + 5);
    expect((await registry.quarantined({ kinds: "job" })).map((q) => q.id)).toEqual([
      ids.pending,
      ids.badLastError,
      ids.expired,
    ]);

    // A repaired row runs again; the others stay quarantined.
    const task = { id: ids.expired, kind: "job", status: "pending" as const, input: "again" };
    await registry.repair(ids.expired, { ...task, checkpoint: null, attempts: 0 });
    expect(storedBytes(file, ids.expired)).toMatchObject({ steps: [] });
    const repaired = await registry.claimMany("job", { owner: "w", limit: 40 });
    expect(repaired.map((c) => c.task.id)).toContain(ids.expired);
    expect(quarantineColumns(file).map((q) => q.id)).toEqual(
      [ids.pending, ids.badLastError].sort(),
    );
  });
});

describe("a read-only registry", () => {
  it("skips a damaged pending task in pending() without writing anything", async () => {
    const file = tempDbPath();
    const clock = { now: T0 };
    const ids = await damagedFile(file, clock);
    const reader = await openRegistry(file, { readOnly: true, clock: () => clock.now });
    registries.push(reader);
    const events: unknown[] = [];
    reader.on("quarantined", (event) => events.push(event));
    const listed = await reader.pending("job", { limit: 2 });
    expect(listed.map((t) => t.id)).toEqual([ids.badLastError, ids.good[0]]);
    expect(events).toEqual([]);
    expect(quarantineColumns(file)).toEqual([]);
  });
});

describe("the quarantine migration", () => {
  it("upgrades a file made before it: rows kept, none quarantined, queue indexes unchanged", async () => {
    const file = await fileBefore("0003_quarantine");
    const db = new Database(file);
    const insert = db.prepare(
      "insert into tasks (id, kind, status, data, created_at, updated_at, run_at) values (?, 'job', 'pending', ?, ?, ?, ?)",
    );
    const ids = [newTaskId(T0), newTaskId(T0 + 1), newTaskId(T0 + 2)];
    for (const id of ids) {
      const data = writeTask({
        id,
        kind: "job",
        status: "pending",
        input: 1,
        checkpoint: null,
        attempts: 0,
      });
      insert.run(id, id === ids[0] ? "garbage" : data, T0, T0, T0);
    }
    db.close();
    const indexesBefore = indexes(file);
    await migrateFile(file, "0004");
    // The queue paths search the very same indexes: only the list of quarantined rows is new.
    const { tasks_quarantined: added, ...kept } = indexes(file);
    expect(kept).toEqual(indexesBefore);
    expect(added).toMatch(/where "quarantined_at" is not null/i);
    expect(quarantineColumns(file)).toEqual([]);

    // Upgraded to the latest layout by the registry, the rows serve.
    const clock = { now: T0 };
    const { registry, events } = await open(file, clock);
    expect(quarantineColumns(file)).toEqual([]);
    expect((await registry.claim("job", { owner: "w" }))?.task.id).toBe(ids[1]);
    expect(events.map((e) => e.id)).toEqual([ids[0]]);
    expect((await registry.pending("job")).map((t) => t.id)).toEqual([ids[2]]);
  });

  it("keeps the claim probe an index-only search", async () => {
    const file = tempDbPath();
    const statements: string[] = [];
    const db = new Database(file, { verbose: (sql) => statements.push(String(sql)) });
    const traced = new TaskRegistry(await SqliteBackend.open(db));
    await traced.submit("job", 1);
    await traced.submit("other", 2);
    statements.length = 0;
    await traced.claim("job", { owner: "w" });
    // Every kind: the kinds with pending tasks, one seek each, then each kind's probe.
    await traced.claim("", { owner: "w" });
    const dueProbes = statements.filter((sql) => /^select "seq" from "tasks"/.test(sql));
    const kindProbes = statements.filter((sql) => /^select "kind" from "tasks"/.test(sql));
    expect(dueProbes).toHaveLength(2);
    expect(kindProbes.length).toBeGreaterThan(0);
    for (const sql of [...dueProbes, ...kindProbes]) {
      const plan = (db.prepare(`explain query plan ${sql}`).all() as { detail: string }[])
        .map((row) => row.detail)
        .join("\n");
      expect(plan, sql).toMatch(/USING COVERING INDEX tasks_(claim_kind|pending_kind_id)\b/);
    }
    await traced.close();
    db.close();
  });
});
