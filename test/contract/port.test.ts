/**
 * The storage port's contract, checked directly on every backend (no TaskRegistry in between):
 * get/put/list/cas/pending/close, with data treated as opaque text.
 */
import fc from "fast-check";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import { isTaskId, newTaskId, type TaskId } from "../../src/ids.js";
import type { TaskRow } from "../../src/task-state.js";
import { writeTask } from "../../src/wire/codec.js";
import { TASK_STATUSES, type TaskStatus } from "../../src/wire/schema.js";
import { BACKENDS } from "../support/backends.js";

/** A row whose document is a real task in the crate's JSON format. */
function taskRow(id: TaskId, kind: string, status: TaskStatus = "pending", input: unknown = null) {
  const data = writeTask({ id, kind, status, input: input as null, checkpoint: null, attempts: 0 });
  return { kind, status, data } satisfies TaskRow;
}

/** A hand-made valid task id: 10 time characters and 16 random ones (Crockford base32). */
function craftedId(time: string, random = ""): TaskId {
  const id = `task_${time.padStart(10, "0")}${random.padStart(16, "0")}`;
  if (!isTaskId(id)) throw new Error(`not a task id: ${id}`);
  return id;
}

/** The documents pending() lists, in its order. */
async function pendingDocuments(
  db: RegistryBackend,
  kind: string,
  limit?: number,
): Promise<string[]> {
  return (await db.pending(kind === "" ? [] : [kind], limit)).map((stored) => stored.data);
}

/** Awaits `run()` and returns its rejection; a synchronous throw or a fulfilment fails the test. */
async function rejection(run: () => Promise<unknown>): Promise<unknown> {
  let promise: Promise<unknown>;
  try {
    promise = run();
  } catch (error) {
    throw new Error(`threw synchronously instead of rejecting: ${String(error)}`);
  }
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${JSON.stringify(value)}`);
    },
    (error: unknown) => error,
  );
}

describe.each(BACKENDS)("storage port contract on $name", (factory) => {
  const opened: RegistryBackend[] = [];
  const open = async (): Promise<RegistryBackend> => {
    const b = await factory.open();
    opened.push(b);
    return b;
  };
  let db: RegistryBackend;

  beforeEach(async () => {
    db = await open();
  });
  afterEach(async () => {
    await Promise.all(opened.splice(0).map((b) => b.close()));
  });

  describe("get and put", () => {
    it("get of a missing id is undefined", async () => {
      expect(await db.get(newTaskId())).toBeUndefined();
    });

    it("put then get returns exactly the stored document", async () => {
      const id = newTaskId();
      const row = taskRow(id, "build", "pending", { repo: "cruxx", n: [1, 2.5, "x"] });
      await db.put(id, row, Date.now());
      expect(await db.get(id)).toBe(row.data);
      expect(await db.get(newTaskId())).toBeUndefined();
    });

    it("put and get keep any well-formed text unchanged", async () => {
      await fc.assert(
        fc.asyncProperty(fc.string({ unit: "grapheme", maxLength: 40 }), async (data) => {
          const id = newTaskId();
          await db.put(id, { kind: "k", status: "running", data }, Date.now());
          expect(await db.get(id)).toBe(data);
        }),
        { numRuns: 50 },
      );
      // Edge cases the generator may miss: NUL, astral characters, U+FFFF, trailing spaces.
      for (const data of ["", "a\u0000b", "x\u{1F600}y", "\uffff", "  ", '{"a":1} ']) {
        const id = newTaskId();
        await db.put(id, { kind: "k", status: "running", data }, Date.now());
        expect(await db.get(id)).toBe(data);
      }
    });

    it("put overwrites unconditionally, including kind and status", async () => {
      const id = newTaskId();
      await db.put(id, taskRow(id, "build", "running"), Date.now());
      expect(await pendingDocuments(db, "")).toEqual([]);

      const second = taskRow(id, "deploy", "pending", 2);
      await db.put(id, second, Date.now());
      expect(await db.get(id)).toBe(second.data);
      expect(await pendingDocuments(db, "build")).toEqual([]);
      expect(await pendingDocuments(db, "deploy")).toEqual([second.data]);

      const third = taskRow(id, "deploy", "done", 3);
      await db.put(id, third, Date.now());
      expect(await db.get(id)).toBe(third.data);
      expect(await pendingDocuments(db, "")).toEqual([]);
      expect(await db.list("")).toEqual([id]);
    });
  });

  describe("list", () => {
    it('list("") is every id in id order, which is mint order', async () => {
      expect(await db.list("")).toEqual([]);
      const ids = Array.from({ length: 6 }, () => newTaskId());
      // Insert out of order; the port must sort.
      for (const i of [3, 0, 5, 1, 4, 2]) {
        const id = ids[i] as TaskId;
        await db.put(id, taskRow(id, "k"), Date.now());
      }
      expect(await db.list("")).toEqual(ids);
    });

    describe("by prefix", () => {
      // Three timestamps, two ids each: every prefix range has ids before and after it.
      const ids = [
        craftedId("1", "1"),
        craftedId("1", "2"),
        craftedId("2", "1"),
        craftedId("2", "A"),
        craftedId("3", "1"),
        craftedId("3", "2"),
      ];
      beforeEach(async () => {
        for (const id of [...ids].reverse()) await db.put(id, taskRow(id, "k"), Date.now());
      });

      it("a prefix keeps exactly the ids that start with it, in order", async () => {
        expect(await db.list("task_0000000002")).toEqual([ids[2], ids[3]]);
        expect(await db.list("task_0000000001")).toEqual([ids[0], ids[1]]);
        expect(await db.list("task_0000000003")).toEqual([ids[4], ids[5]]);
      });

      it('"task_" (with `_`) matches every id', async () => {
        expect(await db.list("task_")).toEqual(ids);
        expect(await db.list("task")).toEqual(ids);
      });

      it("`_` and `%` in a prefix are literal characters, not wildcards", async () => {
        expect(await db.list("task_00000000_2")).toEqual([]);
        expect(await db.list("task_%")).toEqual([]);
        expect(await db.list("%")).toEqual([]);
        expect(await db.list("task__")).toEqual([]);
      });

      it("prefixes match case-sensitively", async () => {
        expect(await db.list("TASK_")).toEqual([]);
        expect(await db.list((ids[3] as TaskId).toLowerCase())).toEqual([]); // ends in "a", not "A"
      });

      it("a prefix that matches nothing gives an empty list", async () => {
        expect(await db.list("job_")).toEqual([]);
        expect(await db.list("task_0000000004")).toEqual([]);
        expect(await db.list("task_8")).toEqual([]); // past every id
        expect(await db.list("a")).toEqual([]); // before every id
        expect(await db.list(`${ids[5]}0`)).toEqual([]); // longer than an id
      });

      it("a full id as prefix gives exactly that id", async () => {
        for (const id of ids) expect(await db.list(id)).toEqual([id]);
      });
    });
  });

  describe("cas", () => {
    it("replaces the row and returns true when the document matches", async () => {
      const id = newTaskId();
      const before = taskRow(id, "build", "pending", 1);
      await db.put(id, before, Date.now());
      const after = taskRow(id, "deploy", "running", 2);
      expect(await db.cas(id, before.data, after, { now: Date.now() })).toBe(true);
      expect(await db.get(id)).toBe(after.data);
      // The indexed columns follow the new row.
      expect(await pendingDocuments(db, "")).toEqual([]);
      const again = taskRow(id, "deploy", "pending", 3);
      expect(await db.cas(id, after.data, again, { now: Date.now() })).toBe(true);
      expect(await pendingDocuments(db, "deploy")).toEqual([again.data]);
      expect(await pendingDocuments(db, "build")).toEqual([]);
    });

    it("returns false and writes nothing when the document differs", async () => {
      const id = newTaskId();
      const stored = taskRow(id, "build", "pending", 1);
      await db.put(id, stored, Date.now());
      const next = taskRow(id, "build", "done", 1);
      const near = [
        `${stored.data} `,
        ` ${stored.data}`,
        stored.data.slice(0, -1),
        stored.data.toUpperCase(),
        stored.data.replace('"input":1', '"input":1.0'),
        taskRow(id, "build", "running", 1).data,
        "",
      ];
      for (const expected of near) {
        expect(expected).not.toBe(stored.data);
        expect(await db.cas(id, expected, next, { now: Date.now() })).toBe(false);
        expect(await db.get(id)).toBe(stored.data);
        expect(await pendingDocuments(db, "build")).toEqual([stored.data]);
      }
    });

    it("a single trailing space is a difference", async () => {
      const id = newTaskId();
      await db.put(id, { kind: "k", status: "pending", data: "doc" }, Date.now());
      expect(
        await db.cas(id, "doc ", { kind: "k", status: "done", data: "new" }, { now: Date.now() }),
      ).toBe(false);
      expect(await db.get(id)).toBe("doc");
      await db.put(id, { kind: "k", status: "pending", data: "doc " }, Date.now());
      expect(
        await db.cas(id, "doc", { kind: "k", status: "done", data: "new" }, { now: Date.now() }),
      ).toBe(false);
      expect(await db.get(id)).toBe("doc ");
      expect(
        await db.cas(id, "doc ", { kind: "k", status: "done", data: "new" }, { now: Date.now() }),
      ).toBe(true);
      expect(await db.get(id)).toBe("new");
    });

    it("returns false for a missing record and does not create it", async () => {
      const other = newTaskId();
      const otherRow = taskRow(other, "k");
      await db.put(other, otherRow, Date.now());
      const id = newTaskId();
      const row = taskRow(id, "k");
      expect(await db.cas(id, "", row, { now: Date.now() })).toBe(false);
      expect(await db.cas(id, row.data, row, { now: Date.now() })).toBe(false);
      expect(await db.get(id)).toBeUndefined();
      expect(await db.list("")).toEqual([other]);
      expect(await pendingDocuments(db, "k")).toEqual([otherRow.data]);
    });

    it("compares any well-formed text byte for byte", async () => {
      const text = fc.string({ unit: "grapheme", maxLength: 20 });
      await fc.assert(
        fc.asyncProperty(text, text, async (stored, expected) => {
          const id = newTaskId();
          await db.put(id, { kind: "k", status: "pending", data: stored }, Date.now());
          const swapped = await db.cas(
            id,
            expected,
            { kind: "k", status: "done", data: "next" },
            { now: Date.now() },
          );
          expect(swapped).toBe(stored === expected);
          expect(await db.get(id)).toBe(swapped ? "next" : stored);
        }),
        { numRuns: 50 },
      );
    });

    it("of two concurrent swaps from the same document exactly one wins", async () => {
      const id = newTaskId();
      await db.put(id, { kind: "k", status: "pending", data: "v0" }, Date.now());
      const results = await Promise.all([
        db.cas(id, "v0", { kind: "k", status: "running", data: "a" }, { now: Date.now() }),
        db.cas(id, "v0", { kind: "k", status: "running", data: "b" }, { now: Date.now() }),
      ]);
      expect(results.filter(Boolean)).toHaveLength(1);
      expect(await db.get(id)).toBe(results[0] ? "a" : "b");
    });
  });

  describe("pending", () => {
    it("returns only pending rows of the kind, in id order whatever the insertion order", async () => {
      const ids = Array.from({ length: 8 }, () => newTaskId());
      const plan: [kind: string, status: TaskStatus][] = [
        ["a", "pending"],
        ["b", "pending"],
        ["a", "running"],
        ["a", "pending"],
        ["b", "done"],
        ["c", "failed"],
        ["b", "pending"],
        ["a", "pending"],
      ];
      const rows = ids.map((id, i) => {
        const [kind, status] = plan[i] as [string, TaskStatus];
        return taskRow(id, kind, status, i);
      });
      for (const i of [7, 2, 5, 0, 6, 3, 1, 4])
        await db.put(ids[i] as TaskId, rows[i] as TaskRow, Date.now());

      const docs = (...indexes: number[]) => indexes.map((i) => rows[i]?.data);
      expect(await pendingDocuments(db, "a")).toEqual(docs(0, 3, 7));
      expect(await pendingDocuments(db, "b")).toEqual(docs(1, 6));
      expect(await pendingDocuments(db, "c")).toEqual([]);
      expect(await pendingDocuments(db, "missing")).toEqual([]);
      expect(await pendingDocuments(db, "")).toEqual(docs(0, 1, 3, 6, 7));
    });

    it("honours limit, keeping the oldest", async () => {
      const ids = Array.from({ length: 5 }, () => newTaskId());
      for (const id of [...ids].reverse()) await db.put(id, taskRow(id, "a"), Date.now());
      const done = newTaskId();
      await db.put(done, taskRow(done, "a", "done"), Date.now());
      const all = await Promise.all(ids.map((id) => db.get(id)));

      expect(await pendingDocuments(db, "a", 1)).toEqual(all.slice(0, 1));
      expect(await pendingDocuments(db, "a", 3)).toEqual(all.slice(0, 3));
      expect(await pendingDocuments(db, "", 2)).toEqual(all.slice(0, 2));
      expect(await pendingDocuments(db, "a", 5)).toEqual(all);
      expect(await pendingDocuments(db, "a", 100)).toEqual(all);
      expect(await pendingDocuments(db, "")).toEqual(all);
    });

    it("reads kind and status from the row, treating the document as opaque", async () => {
      const id = newTaskId();
      await db.put(id, { kind: "k", status: "pending", data: "not json" }, Date.now());
      const done = newTaskId();
      await db.put(done, { kind: "k", status: "done", data: '{"status":"pending"}' }, Date.now());
      expect(await pendingDocuments(db, "k")).toEqual(["not json"]);
    });

    it("matches a filter over random rows", async () => {
      const arbRow = fc.record({
        kind: fc.constantFrom("a", "b", "c_", "A"),
        status: fc.constantFrom(...TASK_STATUSES),
      });
      const arbQuery = fc.record({
        kind: fc.constantFrom("", "a", "b", "c_", "c%", "A"),
        limit: fc.option(fc.integer({ min: 1, max: 6 }), { nil: undefined }),
      });
      // Rows in id order, and a random order to insert them in.
      const arbRows = fc.array(arbRow, { maxLength: 12 }).chain((specs) =>
        fc.tuple(
          fc.constant(specs),
          fc.shuffledSubarray([...specs.keys()], {
            minLength: specs.length,
            maxLength: specs.length,
          }),
        ),
      );
      await fc.assert(
        fc.asyncProperty(
          arbRows,
          fc.array(arbQuery, { minLength: 1, maxLength: 4 }),
          async ([specs, insertOrder], queries) => {
            const b = await open();
            const rows = specs.map((spec, i) => ({ id: newTaskId(), ...spec, data: `doc ${i}` }));
            for (const i of insertOrder) {
              const row = rows[i] as (typeof rows)[number];
              await b.put(row.id, row, Date.now());
            }
            for (const { kind, limit } of queries) {
              const expected = rows
                .filter((r) => r.status === "pending" && (kind === "" || r.kind === kind))
                .map((r) => ({ id: r.id, data: r.data }))
                .slice(0, limit);
              expect(await b.pending(kind === "" ? [] : [kind], limit)).toEqual(expected);
            }
            await b.close();
          },
        ),
        { numRuns: 25 },
      );
    });
  });

  describe("quarantineClaimed", () => {
    it("gives back nothing once a put has ended the claim's lease, even running again", async () => {
      const id = newTaskId();
      await db.put(id, taskRow(id, "k"), 0);
      const lease = { owner: "w", now: 1, expiresAt: 1000 };
      const [claimed] = (await db.claim(["k"], lease, 1)).changed;
      const token = claimed?.lease?.token as string;
      const stored = (await db.get(id)) as string;
      await db.put(id, { kind: "k", status: "pending", data: stored }, 2);
      await db.put(id, { kind: "k", status: "running", data: stored }, 3);
      expect(await db.quarantineClaimed(id, token, "does not decode", 4)).toBeUndefined();
      expect(await db.quarantined([])).toEqual([]);
    });
  });

  describe("close", () => {
    it("every operation rejects with CLOSED afterwards, and close is idempotent", async () => {
      const id = newTaskId();
      const row = taskRow(id, "k");
      await db.put(id, row, Date.now());
      await db.close();
      await db.close();
      const operations: [string, () => Promise<unknown>][] = [
        ["get", () => db.get(id)],
        ["put", () => db.put(id, row, Date.now())],
        ["list", () => db.list("")],
        ["cas", () => db.cas(id, row.data, row, { now: Date.now() })],
        ["pending", () => db.pending([])],
        ["pending(kind, limit)", () => db.pending(["k"], 1)],
      ];
      for (const [name, run] of operations) {
        const error = await rejection(run);
        expect((error as { code?: unknown }).code, name).toBe("CLOSED");
      }
      await expect(db.close()).resolves.toBeUndefined();
    });
  });
});
