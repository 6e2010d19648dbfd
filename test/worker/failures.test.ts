/**
 * How the worker ends a run that fails, on every backend: a handler or step that throws a
 * value that is not an Error, a step whose result cannot be stored, and a cancel that races
 * the handler's return.
 */
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it } from "vitest";
import { TaskRegistry } from "../../src/registry.js";
import type { CruxErr } from "../../src/wire/schema.js";
import { BACKENDS } from "../support/backends.js";
import { Harness, nextEvent, recordEvents, settled } from "./helpers.js";

const h = new Harness();
afterEach(() => h.cleanup());

const cyclic: Record<string, unknown> = { name: "loop" };
cyclic.self = cyclic;

/** `error` whose `key` is a getter that throws. */
function throwingGetter(error: Error, key: string): Error {
  return Object.defineProperty(error, key, {
    get() {
      throw new Error(key);
    },
  });
}

/** Thrown values that are not Errors, and how the stored message describes each. */
const NON_ERRORS: readonly (readonly [string, () => unknown, string])[] = [
  ["a plain object", () => ({ a: 1 }), "{ a: 1 }"],
  ["a string", () => "oops", "'oops'"],
  ["undefined", () => undefined, "undefined"],
  ["null", () => null, "null"],
  ["a Symbol", () => Symbol("s"), "Symbol(s)"],
  ["a bigint", () => 12n, "12n"],
  ["a cycle", () => cyclic, "<ref *1> { name: 'loop', self: [Circular *1] }"],
  [
    "an object whose toString throws",
    () => ({
      toString() {
        throw new Error("no");
      },
    }),
    "{ toString: [Function: toString] }",
  ],
  ["an object without a prototype", () => Object.create(null), "[Object: null prototype] {}"],
  [
    "an object whose Symbol.toStringTag getter throws (util.inspect reads it)",
    () => ({
      get [Symbol.toStringTag](): string {
        throw new Error("tag");
      },
    }),
    "something util.inspect cannot show (typeof object)",
  ],
  [
    "an object on Error.prototype whose stack getter throws",
    () =>
      Object.create(Error.prototype, {
        stack: {
          get() {
            throw new Error("stack");
          },
        },
      }),
    "something util.inspect cannot show (typeof object)",
  ],
  [
    "a Proxy whose every trap throws",
    () =>
      new Proxy(
        { hidden: 1 },
        {
          get: () => {
            throw new Error("trap");
          },
          ownKeys: () => {
            throw new Error("trap");
          },
          getPrototypeOf: () => {
            throw new Error("trap");
          },
        },
      ),
    "{ hidden: 1 }",
  ],
];

describe.each(BACKENDS)("failing runs on $name", (factory) => {
  async function open(): Promise<TaskRegistry> {
    return h.track(new TaskRegistry(await factory.open()));
  }

  /** The error stored for a task of one run whose handler throws `make()`. */
  async function errorOfThrowing(make: () => unknown): Promise<CruxErr | null> {
    const registry = await open();
    const id = await registry.submit("job", null, { maxAttempts: 1 });
    const done = settled(registry, id);
    h.work(registry, "job", async () => {
      throw make();
    });
    expect(await done).toBe("failed");
    return (await registry.inspect(id)).lastError;
  }

  // The default lease is 30 s: a run whose fail() were refused would only end at its expiry,
  // long after `settled` gives up.
  it.each(NON_ERRORS)(
    "a handler that throws %s fails the run at once, describing the value",
    async (_label, make, description) => {
      expect(await errorOfThrowing(make)).toEqual({
        kind: "step_failed",
        step: "",
        message: `the handler threw a non-Error value: ${description}`,
      });
      expect(h.errors).toEqual([]);
    },
  );

  it.each(NON_ERRORS)(
    "a step that throws %s is stored as err, the value described",
    async (_label, make, description) => {
      const registry = await open();
      const id = await registry.submit("job", null, { maxAttempts: 1 });
      const done = settled(registry, id);
      h.work(registry, "job", async (_task, ctx) => {
        await ctx.step("s", () => {
          throw make();
        });
      });
      expect(await done).toBe("failed");
      const message = `the step threw a non-Error value: ${description}`;
      const record = await registry.inspect(id);
      expect(record.lastError).toEqual({ kind: "step_failed", step: "s", message });
      expect(record.task.checkpoint?.steps[0]).toMatchObject({
        name: "s",
        status: "err",
        error: message,
      });
      expect(h.errors).toEqual([]);
    },
  );

  it.each([
    [
      "an Error of another realm (a vm context's)",
      () => runInNewContext("new Error('from a vm')"),
      "from a vm",
    ],
    [
      "an Error whose message getter throws",
      () => throwingGetter(new Error("hidden"), "message"),
      "the handler threw an Error whose message is not text: something util.inspect cannot show (typeof object)",
    ],
    [
      "an Error whose code getter throws (the worker asks for LEASE_LOST)",
      () => throwingGetter(new Error("plain"), "code"),
      "plain",
    ],
    [
      "an Error whose message is not text",
      () => Object.assign(new Error(), { message: 42 }),
      "the handler threw an Error whose message is not text: ",
    ],
  ])(
    "a handler that throws %s fails the run at once (its fail() was refused)",
    async (_label, make, message) => {
      const error = await errorOfThrowing(make);
      expect(error).toMatchObject({ kind: "step_failed", step: "" });
      expect(error?.kind === "step_failed" && error.message.startsWith(message)).toBe(true);
      expect(h.errors).toEqual([]);
    },
  );

  it("a handler that lets a LEASE_LOST about another task escape fails its own run, not abandons it", async () => {
    const registry = await open();
    const id = await registry.submit("job", null, { maxAttempts: 1 });
    const other = await registry.submit("other", null);
    const done = settled(registry, id);
    h.work(registry, "job", async () => {
      const claimed = await registry.claim("other", { owner: "handler" });
      await registry.updateStatus(other, "pending"); // its lease ends
      await registry.complete(other, claimed?.lease.token ?? "", 1);
    });
    expect(await done).toBe("failed");
    expect((await registry.inspect(id)).lastError).toMatchObject({
      message: expect.stringContaining(`lease lost on task ${other}`),
    });
  });

  class Point {
    x = 1;
  }

  it.each([
    [
      "a Date inside an object",
      () => ({ when: new Date(0) }),
      ".when",
      "Date is not a plain object",
    ],
    ["a class instance", () => new Point(), "", "Point is not a plain object"],
    ["a Map", () => new Map([["a", 1]]), "", "Map is not a plain object"],
    ["a function", () => () => 1, "", "function is not a JSON value"],
    ["undefined in an array", () => ({ a: [1, undefined] }), ".a[1]", "undefined is not"],
    ["a bigint beyond u64", () => 2n ** 64n, "", "outside the i64/u64 range"],
  ])(
    "a step whose result is %s throws VALIDATION naming the step, and the task fails for good",
    async (_label, make, at, why) => {
      const registry = await open();
      const id = await registry.submit("job", null, { maxAttempts: 3 });
      const events = recordEvents(registry, () => id);
      const done = settled(registry, id);
      let seen: unknown;
      h.work(registry, "job", async (_task, ctx) => {
        try {
          await ctx.step("fetch", make as () => unknown);
        } catch (error) {
          seen = error;
          throw error;
        }
      });
      expect(await done).toBe("failed");
      const path = `$.step("fetch").output${at}`;
      expect(seen).toMatchObject({ code: "VALIDATION", path });
      expect((seen as Error).message).toContain(why);
      const message = `its result cannot be stored: ${(seen as Error).message}`;
      const record = await registry.inspect(id);
      expect(record.runs).toBe(1);
      expect(record.lastError).toEqual({ kind: "step_failed", step: "fetch", message });
      expect(record.task.checkpoint?.steps[0]).toMatchObject({
        name: "fetch",
        status: "err",
        output: null,
        error: message,
      });
      expect(events.map((e) => e.name)).toEqual(["claimed", "step", "failed"]); // never retried
      expect(h.errors).toEqual([]);
    },
  );

  it("a handler that catches that VALIDATION and carries on completes as usual", async () => {
    const registry = await open();
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    h.work(registry, "job", async (_task, ctx) => {
      const when = await ctx
        .step("when", () => new Date(0) as unknown)
        .catch(() => ctx.step("when-as-text", () => new Date(0).toISOString()));
      return { when };
    });
    expect(await done).toBe("completed");
    expect((await registry.get(id)).checkpoint?.value).toEqual({
      Ok: { when: "1970-01-01T00:00:00.000Z" },
    });
  });

  describe("cancel() while the handler runs", () => {
    const CANCELLED: CruxErr = { kind: "cancelled", reason: "user asked" };

    it("a handler that ignores the signal and returns ends failed as cancelled, not done", async () => {
      const registry = await open();
      const id = await registry.submit("job", null);
      const started = h.gate();
      const finish = h.gate();
      const events = recordEvents(registry, () => id);
      h.work(registry, "job", async () => {
        started.open();
        await finish.opened;
        return "finished anyway";
      });
      await started.opened;
      const done = settled(registry, id);
      expect(await registry.cancel(id, "user asked")).toBe(true);
      finish.open();
      expect(await done).toBe("failed");
      const record = await registry.inspect(id);
      expect(record.task.status).toBe("failed");
      expect(record.task.checkpoint?.value).toEqual({ Err: CANCELLED });
      expect(record.lastError).toEqual(CANCELLED);
      expect(record.cancelRequested).toBe(true);
      expect(events.map((e) => e.name)).toEqual(["claimed", "cancelled", "failed"]);
      expect(events.at(-1)?.event).toEqual({ id, kind: "job", error: CANCELLED });
    });

    it("a handler stopped by the signal: the failed event has the reason given to cancel()", async () => {
      const registry = await open();
      const id = await registry.submit("job", null);
      const started = h.gate();
      h.work(registry, "job", async (_task, ctx) => {
        started.open();
        await new Promise((_resolve, reject) => {
          ctx.signal.addEventListener("abort", () => reject(ctx.signal.reason), { once: true });
        });
      });
      await started.opened;
      const failed = nextEvent(registry, "failed", (e) => e.id === id);
      await registry.cancel(id, "user asked");
      expect((await failed).error).toEqual(CANCELLED);
      expect((await registry.inspect(id)).lastError).toEqual(CANCELLED);
    });
  });
});
