/**
 * Group commit: the writes of one tick share a transaction; a failing one rejects alone, and
 * a committed batch resolves only once it is durable.
 */
import Database from "better-sqlite3";
import { describe, expect, it } from "vitest";
import { GroupCommit } from "../../src/backend/sqlite/group-commit.js";

/** Settles pending callbacks and promise reactions. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

function setUp(durable?: () => Promise<void>) {
  const db = new Database(":memory:");
  db.exec("create table t (x unique)");
  let commits = 0;
  const writer = new GroupCommit(db, {
    isBusy: () => false,
    busyTimeoutMs: 1000,
    onTimeout: (cause) => cause,
    translate: (error) => new Error(`translated: ${(error as Error).message}`),
    onCommit: () => commits++,
    ...(durable && { durable }),
  });
  const insert = db.prepare("insert into t values (?)");
  const values = () => db.prepare("select x from t order by x").pluck().all() as number[];
  return { db, writer, insert, values, commits: () => commits };
}

describe("GroupCommit", () => {
  it("runs the writes of one tick in one transaction", async () => {
    const { writer, insert, values, commits } = setUp();
    await Promise.all([1, 2, 3].map((x) => writer.write(() => insert.run(x))));
    expect(values()).toEqual([1, 2, 3]);
    expect(commits()).toBe(1);
  });

  it("rejects a failing write alone, its partial writes undone, and commits the others", async () => {
    const { writer, insert, values, commits } = setUp();
    const runs = { first: 0, failing: 0, last: 0 };
    const results = await Promise.allSettled([
      writer.write(() => {
        runs.first++;
        insert.run(1);
      }),
      writer.write(() => {
        runs.failing++;
        insert.run(2);
        insert.run(1); // violates the unique constraint after writing 2
      }),
      writer.write(() => {
        runs.last++;
        insert.run(3);
      }),
    ]);
    expect(results.map((r) => r.status)).toEqual(["fulfilled", "rejected", "fulfilled"]);
    expect(values()).toEqual([1, 3]);
    expect(commits()).toBe(1);
    // The batch was rolled back at the failure and run again, each write in a savepoint.
    expect(runs).toEqual({ first: 2, failing: 2, last: 1 });
  });

  it("rejects a batch of one that fails, with nothing written", async () => {
    const { writer, insert, values } = setUp();
    await expect(
      writer.write(() => {
        insert.run(1);
        throw new Error("bad");
      }),
    ).rejects.toThrow("bad");
    expect(values()).toEqual([]);
  });

  it("commits at once but resolves after the flush; the next batch does not wait for it", async () => {
    const flushes: (() => void)[] = [];
    const { writer, insert, values } = setUp(
      () => new Promise<void>((resolve) => flushes.push(resolve)),
    );
    let resolved = 0;
    const first = writer.write(() => insert.run(1)).then(() => resolved++);
    await settle();
    expect(values()).toEqual([1]); // committed
    expect(resolved).toBe(0); // not yet durable
    const second = writer.write(() => insert.run(2)).then(() => resolved++);
    await settle();
    expect(values()).toEqual([1, 2]); // committed while the first flush still runs
    expect(flushes).toHaveLength(2);
    flushes[0]?.();
    await first;
    expect(resolved).toBe(1);
    let drained = false;
    const draining = writer.drained().then(() => {
      drained = true;
    });
    await settle();
    expect(drained).toBe(false); // the second batch is still being flushed
    flushes[1]?.();
    await Promise.all([second, draining]);
    expect(resolved).toBe(2);
  });

  it("rejects a committed batch, translated, when its flush fails", async () => {
    const { writer, insert } = setUp(() => Promise.reject(new Error("EIO")));
    await expect(writer.write(() => insert.run(1))).rejects.toThrow("translated: EIO");
  });

  it("rejects a failed write at once: it was rolled back and waits for no flush", async () => {
    let flushes = 0;
    const { writer } = setUp(() => {
      flushes++;
      return new Promise<void>(() => undefined);
    });
    await expect(
      writer.write(() => {
        throw new Error("bad");
      }),
    ).rejects.toThrow("bad");
    expect(flushes).toBe(0);
  });
});
