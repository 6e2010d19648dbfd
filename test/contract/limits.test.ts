/**
 * One rule for what can be stored (issue 8, items 1 and 5), on every backend: every write
 * either stores what `get`, `inspect` and `loadCheckpoint` read back, or is refused with
 * VALIDATION, naming the path, and writes nothing. The nesting limits are exact: the deepest
 * value each entry point takes reads back, and one level more is refused. Each case the issue
 * found by trying is a test here.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import { ValidationError } from "../../src/errors.js";
import { CruxFailure } from "../../src/failure.js";
import type { TaskId } from "../../src/ids.js";
import { TaskRegistry } from "../../src/registry.js";
import { F64, type Json } from "../../src/wire/json.js";
import type { Crux, CruxErr, Step } from "../../src/wire/schema.js";
import { BACKENDS } from "../support/backends.js";
import { makeCrux, stepRecord } from "../support/crux.js";
import { rejection } from "../support/rejection.js";
import { readBack as readStored, storedTasks } from "../support/stored.js";
import { Harness, settled } from "../worker/helpers.js";

const T0 = Date.UTC(2030, 0, 1);

/** Pass a value the types forbid, as a JavaScript caller could. */
const bad = <T>(value: unknown): T => value as T;

/** `1` inside `levels` arrays: it nests `levels` deep. */
function nested(levels: number): Json {
  let value: Json = 1;
  for (let i = 0; i < levels; i++) value = [value];
  return value;
}

const BASE = makeCrux();

/** A Crux whose only child has an only child, `levels` times. */
function childChain(levels: number): Crux {
  let crux: Crux = { ...BASE, steps: [] };
  for (let i = 0; i < levels; i++) crux = { ...BASE, steps: [], children: [crux] };
  return crux;
}

/** A CruxErr of `objects` nested objects: delegations down to a cancellation. */
function delegationChain(objects: number): CruxErr {
  let err: CruxErr = { kind: "cancelled", reason: "deep" };
  for (let i = 1; i < objects; i++) err = { kind: "delegation", to: "sub-agent", source: err };
  return err;
}

function step(fields: Partial<Step>): Step {
  return { ...stepRecord("s", 7n, null), ...fields };
}

describe.each(BACKENDS)("what can be stored, on $name", (factory) => {
  const clock = { now: T0 };
  let backend: RegistryBackend;
  let reg: TaskRegistry;

  beforeEach(async () => {
    clock.now = T0;
    backend = await factory.open();
    reg = new TaskRegistry(backend, { clock: () => clock.now });
  });
  afterEach(() => reg.close());

  /** `act` is refused with VALIDATION at `path` (or a path it starts with), writing nothing. */
  async function refused(act: () => unknown, path: string): Promise<ValidationError> {
    const before = await storedTasks(backend);
    const error = await rejection(Promise.resolve().then(act));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path.startsWith(path), String(error.path)).toBe(true);
    expect(await storedTasks(backend)).toEqual(before);
    return error as ValidationError;
  }

  /** The task as every reader gives it, which must agree; and every pending task decodes. */
  async function readBack(id: TaskId) {
    await reg.pending("");
    return readStored(reg, id);
  }

  /** A claimed task of kind `work`, with its lease token. */
  async function running(maxAttempts = 3): Promise<{ id: TaskId; token: string }> {
    const id = await reg.submit("work", null, { maxAttempts });
    const claimed = await reg.claim("work", { owner: "w", leaseMs: 60_000 });
    expect(claimed?.task.id).toBe(id);
    return { id, token: claimed?.lease.token ?? "" };
  }

  describe("nesting: the deepest value of each entry point reads back, one more level is refused", () => {
    it("submit: input 511 deep (the task object is level 1 of 512); 512 deep was stored unreadable", async () => {
      const id = await reg.submit("deep", nested(511));
      expect((await readBack(id)).task.input).toEqual(nested(511));
      await refused(() => reg.submit("deep", nested(512)), `$.input${"[0]".repeat(511)}`);
      await refused(
        () =>
          reg.submitMany([
            { kind: "deep", input: 1 },
            { kind: "deep", input: nested(512) },
          ]),
        `$[1].input${"[0]".repeat(511)}`,
      );
    });

    it("complete: a result 509 deep ({checkpoint:{value:{Ok:…}}}); 510 deep was stored unreadable", async () => {
      const { id, token } = await running();
      await refused(() => reg.complete(id, token, nested(510)), `$.value${"[0]".repeat(509)}`);
      await reg.complete(id, token, nested(509));
      expect((await readBack(id)).checkpoint?.value).toEqual({ Ok: nested(509) });
    });

    it("recordStep: output 508 deep, events and metadata entries 507; one more was stored unreadable", async () => {
      const { id, token } = await running();
      const deepest = step({
        output: nested(508),
        events: [nested(507)],
        metadata: { m: nested(507) },
      });
      for (const [fields, path] of [
        [{ output: nested(509) }, `$.step.output${"[0]".repeat(508)}`],
        [{ events: [nested(508)] }, `$.step.events[0]${"[0]".repeat(507)}`],
        [{ metadata: { m: nested(508) } }, `$.step.metadata.m${"[0]".repeat(507)}`],
      ] as const) {
        await refused(() => reg.recordStep(id, token, 0, { ...deepest, ...fields }), path);
      }
      await reg.recordStep(id, token, 0, deepest);
      // Appended as a row, it is spliced into the document on read; completing absorbs it.
      expect((await readBack(id)).checkpoint?.steps[0]?.output).toEqual(nested(508));
      await reg.complete(id, token, "done");
      expect((await readBack(id)).checkpoint?.steps[0]?.metadata).toEqual({ m: nested(507) });
    });

    it("checkpoint: children 254 deep; 255 and 300 deep were stored unreadable", async () => {
      const id = await reg.submit("deep", null);
      const deepest = childChain(254);
      await reg.checkpoint(id, deepest);
      expect((await readBack(id)).checkpoint).toEqual(deepest);
      const tooDeep = `$.checkpoint${".children[0]".repeat(255)}`;
      await refused(() => reg.checkpoint(id, childChain(255)), tooDeep);
      await refused(() => reg.checkpoint(id, childChain(300)), tooDeep);
      // A run of the task at the limit decodes and re-encodes it.
      const claimed = await reg.claim("deep", { owner: "w" });
      await reg.complete(id, claimed?.lease.token ?? "", nested(509));
      expect((await readBack(id)).task.status).toBe("done");
    });

    it("fail: a CruxErr of 509 nested objects ({checkpoint:{value:{Err:…}}}); 510 is refused", async () => {
      const { id, token } = await running(1);
      const tooDeep = `$.error${".source".repeat(509)}`;
      await refused(() => reg.fail(id, token, delegationChain(510)), tooDeep);
      expect(() => new CruxFailure(delegationChain(510))).toThrow(ValidationError);
      await reg.fail(id, token, new CruxFailure(delegationChain(509)));
      const { record, checkpoint } = await readBack(id);
      expect(record.lastError).toEqual(delegationChain(509));
      expect(checkpoint?.value).toEqual({ Err: delegationChain(509) });
    });

    it("100,000 levels: VALIDATION at every entry point, not a RangeError from a recursion", async () => {
      const { id, token } = await running();
      await refused(() => reg.submit("deep", nested(100_000)), "$.input[0]");
      await refused(() => reg.checkpoint(id, childChain(100_000)), "$.checkpoint.children[0]");
      await refused(() => reg.fail(id, token, delegationChain(100_000)), "$.error.source");
      await refused(() => reg.complete(id, token, nested(100_000)), "$.value[0]");
      await refused(
        () => reg.recordStep(id, token, 0, step({ output: nested(100_000) })),
        "$.step.output",
      );
      const error = await rejection(
        Promise.resolve().then(() => new CruxFailure(delegationChain(100_000))),
      );
      expect(error).toBeInstanceOf(ValidationError);
      expect(error.path).toBe(`$.err${".source".repeat(509)}`);
    });
  });

  describe("strings: refused when the caller gave them, repaired when they are a message", () => {
    it("cancel refuses a reason that is not well-formed text of at most 1024 characters", async () => {
      const pending = await reg.submit("other", null);
      const { id } = await running();
      for (const reason of [
        42,
        {},
        Symbol("why"),
        "\uD800",
        "bad \uDFFF reason",
        "r".repeat(1025),
      ]) {
        for (const target of [pending, id]) {
          await refused(() => reg.cancel(target, bad(reason)), "$.reason");
        }
      }
      // Nothing stopped the sweep: the running task's lease expires and it is taken back.
      clock.now += 60_000;
      expect((await reg.recover()).map((r) => r.task.id)).toEqual([id]);
      expect(await reg.cancel(pending, "")).toBe(true);
      expect(await reg.cancel(id, "é".repeat(1024))).toBe(true);
      expect((await readBack(id)).record.lastError).toEqual({
        kind: "cancelled",
        reason: "é".repeat(1024),
      });
    });

    it("an Error or a string with a lone surrogate given to fail() is stored with U+FFFD, and the task is claimed again", async () => {
      const { id, token } = await running();
      expect((await reg.fail(id, token, new Error("bad \uD800 byte"))).status).toBe("pending");
      const message = (await readBack(id)).record.lastError;
      expect(message).toEqual({ kind: "step_failed", step: "", message: "bad \uFFFD byte" });
      clock.now += 3_600_000;
      const again = await reg.claim("work", { owner: "w" });
      expect(again?.task.id).toBe(id);
      await reg.fail(id, again?.lease.token ?? "", "bad \uDC00");
      expect((await readBack(id)).record.lastError).toEqual({
        kind: "step_failed",
        step: "",
        message: "bad \uFFFD",
      });
    });

    it("new CruxFailure() refuses a CruxErr of an unknown kind or with mistyped fields", () => {
      for (const [err, path] of [
        [{ kind: "bogus" }, "$.err.kind"],
        [{ kind: "step_failed", step: 1, message: "m" }, "$.err.step"],
        [{ kind: "budget_exceeded", budget_kind: "tokens", limit: -1, actual: 0 }, "$.err.limit"],
        [{ kind: "denied", step: "s", reason: "\uD800" }, "$.err.reason"],
        [undefined, "$.err"],
      ] as const) {
        let error: unknown;
        try {
          new CruxFailure(bad(err));
        } catch (e) {
          error = e;
        }
        expect(error, JSON.stringify(err)).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).path).toBe(path);
      }
    });

    it("fail() checks a CruxErr value and a CruxFailure's err again; nothing is written when refused", async () => {
      const { id, token } = await running(1);
      const changed = new CruxFailure({ kind: "cancelled", reason: "fine" });
      (changed as { err: unknown }).err = { kind: "bogus" };
      await refused(() => reg.fail(id, token, changed), "$.error.err.kind");
      await refused(() => reg.fail(id, token, { kind: "bogus" }), "$.error.kind");
      await refused(
        () => reg.fail(id, token, { kind: "step_failed", step: 1, message: "m" }),
        "$.error.step",
      );
      await refused(
        () => reg.fail(id, token, { kind: "cancelled", reason: "\uD800" }),
        "$.error.reason",
      );
      await reg.fail(id, token, new CruxFailure({ kind: "denied", step: "s", reason: "no" }));
      expect((await readBack(id)).checkpoint?.value).toEqual({
        Err: { kind: "denied", step: "s", reason: "no" },
      });
    });

    it("a lease owner or an idempotency key with a lone surrogate is refused, not stored altered", async () => {
      const id = await reg.submit("work", 1);
      await refused(() => reg.claim("work", { owner: "worker-\uD800" }), "$.owner");
      await refused(
        () => reg.submit("work", 1, { idempotencyKey: "key-\uDC00" }),
        "$.options.idempotencyKey",
      );
      await reg.claim("work", { owner: "worker-é-😀" });
      expect((await readBack(id)).record.lease?.owner).toBe("worker-é-😀");
      const keyed = await reg.submit("work", 2, { idempotencyKey: "key-😀" });
      expect((await readBack(keyed)).record.idempotencyKey).toBe("key-😀");
    });
  });

  describe("no raw error escapes", () => {
    it("every promise-returning method rejects bad arguments rather than throwing them at the call", async () => {
      const calls: [string, () => Promise<unknown>][] = [
        ["claimMany", () => reg.claimMany(42 as never, { owner: "w", limit: 1 })],
        ["quarantined", () => reg.quarantined({ kinds: 42 as never })],
        ["nextWakeAt", () => reg.nextWakeAt(42 as never)],
      ];
      for (const [name, call] of calls) {
        let promise: Promise<unknown> | undefined;
        expect(() => {
          promise = call();
        }, name).not.toThrow();
        expect((await rejection(promise as Promise<unknown>)).code, name).toBe("VALIDATION");
      }
    });

    it("a clock giving NaN, a negative, fractional or non-number value, or throwing: VALIDATION at $.clock, nothing written", async () => {
      const { id, token } = await running();
      await reg.submit("work", null);
      const boom = new Error("clock broke");
      for (const reading of [
        Number.NaN,
        -1,
        1.5,
        2 ** 48,
        "1",
        () => {
          throw boom;
        },
      ]) {
        const broken = new TaskRegistry(backend, {
          clock: () => (typeof reading === "function" ? reading() : bad<number>(reading)),
        });
        await refused(() => broken.submit("work", 1), "$.clock");
        await refused(() => broken.claim("work", { owner: "w" }), "$.clock");
        await refused(() => broken.complete(id, token, 1), "$.clock");
        await refused(() => broken.cancel(id), "$.clock");
      }
      expect(() => new TaskRegistry(backend, { clock: bad(5) })).toThrow(ValidationError);
    });

    it("a clock past 9999-12-31: VALIDATION at $.clock, since a claim or cancel would store a timestamp no reader takes", async () => {
      const last = Date.UTC(9999, 11, 31, 23, 59, 59, 999);
      const { id } = await running();
      clock.now = last + 1;
      await refused(() => reg.submit("work", 1), "$.clock");
      await refused(() => reg.claim("work", { owner: "w" }), "$.clock");
      await refused(() => reg.cancel(id), "$.clock");
      clock.now = last;
      const late = await reg.submit("late", 1);
      const claimed = await reg.claim("late", { owner: "w" });
      await reg.complete(late, claimed?.lease.token ?? "", 1);
      expect((await readBack(late)).task.checkpoint?.finished_at).toBe("9999-12-31T23:59:59.999Z");
      await reg.cancel(await reg.submit("late", 2));
      expect((await readBack(id)).task.status).toBe("running");
      expect(await reg.pending("")).toEqual([]);
    });

    it("a value with a throwing getter or a Proxy: VALIDATION with the caller's error as its cause", async () => {
      const { id, token } = await running();
      const boom = new Error("getter threw");
      const getter = {
        ok: 1,
        get broken(): number {
          throw boom;
        },
      };
      const trap = new Proxy(
        { a: 1 },
        {
          get: () => {
            throw boom;
          },
        },
      );
      const revocable = Proxy.revocable({}, {});
      revocable.revoke();
      const causes = [
        [await refused(() => reg.submit("work", { getter }), "$.input.getter.broken"), boom],
        [await refused(() => reg.submit("work", [trap]), "$.input[0]"), boom],
        [
          await refused(
            () => reg.checkpoint(id, { ...makeCrux(), value: bad(trap) }),
            "$.checkpoint.value",
          ),
          boom,
        ],
        [
          await refused(
            () =>
              reg.checkpoint(
                id,
                bad({
                  ...makeCrux(),
                  get agent() {
                    throw boom;
                  },
                }),
              ),
            "$.checkpoint.agent",
          ),
          boom,
        ],
        [await refused(() => reg.complete(id, token, getter), "$.value.broken"), boom],
        [await refused(() => reg.fail(id, token, trap), "$.error"), boom],
        [await refused(() => reg.recordStep(id, token, 0, bad(trap)), "$.step"), boom],
      ] as const;
      for (const [error, cause] of causes) expect(error.cause).toBe(cause);
      const revoked = await refused(() => reg.submit("work", revocable.proxy), "$.input");
      expect(revoked.cause).toBeInstanceOf(TypeError);
      // fail() asks what it was given (`instanceof`) first: a revoked Proxy throws even there.
      const failed = await refused(() => reg.fail(id, token, revocable.proxy), "$.error");
      expect(failed.cause).toBeInstanceOf(TypeError);
      // zod words an issue's message when it is read, looking at the revoked Proxy again.
      const proxyId = await refused(() => reg.get(bad(revocable.proxy)), "$.id");
      expect(proxyId.cause).toBeInstanceOf(TypeError);
      await refused(() => reg.updateStatus(id, bad(revocable.proxy)), "$.status");
    });

    it("a null, non-object or unreadable options argument, or an unreadable list: VALIDATION (the caller's error as cause), nothing written", async () => {
      const { id, token } = await running();
      const boom = new Error("options trap");
      const trap = new Proxy(
        {},
        {
          get: () => {
            throw boom;
          },
        },
      );
      // A throwing getter for the first field each method reads.
      const fields = ["leaseMs", "owner", "limit", "final", "timeoutMs", "delayMs", "casRetries"];
      const getter = Object.defineProperties(
        {},
        Object.fromEntries(
          fields.map((field) => [
            field,
            {
              enumerable: true,
              get: () => {
                throw boom;
              },
            },
          ]),
        ),
      );
      const listTrap = new Proxy([], {
        get: () => {
          throw boom;
        },
      });
      const revocable = Proxy.revocable([], {});
      revocable.revoke();
      const calls: [string, (options: unknown) => unknown][] = [
        ["claim", (o) => reg.claim("work", bad(o))],
        ["claimMany", (o) => reg.claimMany("work", bad(o))],
        ["heartbeat", (o) => reg.heartbeat(id, token, bad(o))],
        ["pending", (o) => reg.pending("", bad(o))],
        ["recover", (o) => reg.recover([], bad(o))],
        ["quarantined", (o) => reg.quarantined(bad(o))],
        ["fail", (o) => reg.fail(id, token, "boom", bad(o))],
        ["submit", (o) => reg.submit("work", 1, bad(o))],
        ["work", (o) => reg.work("work", () => 1, bad(o))],
        ["new TaskRegistry", (o) => new TaskRegistry(backend, bad(o))],
        ["close", (o) => reg.close(bad(o))],
      ];
      for (const [name, call] of calls) {
        const path = name === "submit" ? "$.options" : "$";
        for (const options of [null, 5, "x", [1]]) {
          const error = await refused(() => call(options), path);
          expect(error.path, `${name}(${String(options)})`).toBe(path);
        }
        for (const options of [trap, getter]) {
          const error = await refused(() => call(options), path);
          expect(error.cause, name).toBe(boom);
        }
      }
      const cases: [() => unknown, string, unknown][] = [
        [() => reg.claim(bad(revocable.proxy), { owner: "w" }), "$.kinds", TypeError],
        [() => reg.submitMany(bad(listTrap)), "$", boom],
        [() => reg.submitMany(bad([{ kind: "work", input: 1 }, trap])), "$[1].kind", boom],
        [() => reg.recordSteps(id, token, bad(listTrap)), "$.steps", boom],
        [() => reg.recordSteps(id, token, bad([trap])), "$.step.ordinal", boom],
      ];
      for (const [act, path, cause] of cases) {
        const error = await refused(act, path);
        expect(error.path).toBe(path);
        if (cause === TypeError) expect(error.cause).toBeInstanceOf(TypeError);
        else expect(error.cause).toBe(cause);
      }
      // biome-ignore lint/suspicious/noSparseArray: the hole is the bad input
      const hole = [, { kind: "work", input: 1 }];
      expect((await refused(() => reg.submitMany(bad(hole)), "$[0]")).path).toBe("$[0]");
      for (const entries of [null, [null], [5]]) {
        await refused(() => reg.recordSteps(id, token, bad(entries)), "$.step");
      }
      expect((await reg.inspect(id)).task.status).toBe("running");
    });

    it("work() checks its handler, owner and signal up front; on() its event name and listener", async () => {
      const cases: [() => unknown, string][] = [
        [() => reg.work("work", bad<() => void>(5)), "$.handler"],
        [() => reg.work("work", () => 1, { owner: "\uD800" }), "$.owner"],
        [() => reg.work("work", () => 1, { owner: "updateStatus" }), "$.owner"],
        [() => reg.work("work", () => 1, { owner: "" }), "$.owner"],
        [() => reg.work("work", () => 1, { signal: bad({}) }), "$.signal"],
        [() => reg.work("work", () => 1, { onError: bad("log") }), "$.onError"],
        [() => reg.on("submitted", bad(5)), "$.listener"],
        [() => reg.on(bad<"submitted">("bogus"), () => {}), "$.name"],
      ];
      for (const [act, path] of cases) {
        expect(() => act()).toThrow(ValidationError);
        expect((await refused(act, path)).path).toBe(path);
      }
    });

    it("JSON.stringify works on every task, record, checkpoint, error and event, u64 bigints as decimal strings", async () => {
      const big = 2n ** 60n;
      const events: unknown[] = [];
      reg.on("failed", (event) => events.push(event));
      reg.on("retried", (event) => events.push(event));
      const id = await reg.submit("work", { n: big, f: new F64(1) }, { maxAttempts: 1 });
      const text = JSON.stringify(await reg.pending("work"));
      expect(JSON.parse(text)).toMatchObject([{ input: { n: String(big), f: 1 } }]);
      const claimed = await reg.claim("work", { owner: "w" });
      const token = claimed?.lease.token ?? "";
      expect(JSON.parse(JSON.stringify(claimed)).task.input.n).toBe(String(big));
      await reg.recordStep(id, token, 0, stepRecord("s", 2n ** 63n, big));
      expect(JSON.parse(JSON.stringify(await reg.loadCheckpoint(id))).steps[0]).toMatchObject({
        input_hash: String(2n ** 63n),
        output: String(big),
      });
      await reg.fail(id, token, {
        kind: "replay_mismatch",
        step: "s",
        expected: big,
        actual: big + 1n,
      });
      const record = JSON.parse(JSON.stringify(await reg.inspect(id)));
      expect(record.lastError).toEqual({
        kind: "replay_mismatch",
        step: "s",
        expected: String(big),
        actual: String(big + 1n),
      });
      expect(JSON.parse(JSON.stringify(await reg.get(id))).checkpoint.value.Err.actual).toBe(
        String(big + 1n),
      );
      expect(JSON.parse(JSON.stringify(events))).toMatchObject([
        { error: { expected: String(big) } },
      ]);
      // recover() hands out records too.
      const other = await reg.submit("work", [big]);
      await reg.claim("work", { owner: "gone" });
      const [recovered] = await reg.recover("work", { owner: "gone" });
      expect(recovered?.task.id).toBe(other);
      expect(JSON.parse(JSON.stringify(recovered)).task.input).toEqual([String(big)]);
    });
  });
});

describe.each(BACKENDS)("a worker's messages with lone surrogates, on $name", (factory) => {
  const h = new Harness();
  afterEach(() => h.cleanup());

  it("a step or a handler throwing new Error('bad \\uD800 byte') fails the run, and the task stays readable", async () => {
    const registry = h.track(new TaskRegistry(await factory.open()));
    const inStep = await registry.submit("step", null, { maxAttempts: 1 });
    const inHandler = await registry.submit("handler", null, { maxAttempts: 1 });
    const ended = [settled(registry, inStep), settled(registry, inHandler)];
    h.work(registry, "step", async (_task, ctx) => {
      await ctx.step("s", () => {
        throw new Error("bad \uD800 byte");
      });
    });
    h.work(registry, "handler", async () => {
      throw new Error("bad \uDBFF byte");
    });
    expect(await Promise.all(ended)).toEqual(["failed", "failed"]);
    for (const id of [inStep, inHandler]) {
      const record = await registry.inspect(id);
      const message = record.lastError?.kind === "step_failed" ? record.lastError.message : "";
      expect(message).toContain("bad \uFFFD byte");
      expect(await registry.get(id)).toEqual(record.task);
    }
    expect((await registry.loadCheckpoint(inStep))?.steps[0]?.error).toBe("bad \uFFFD byte");
    expect(await registry.claim(["step", "handler"], { owner: "w" })).toBeNull();
    expect(h.errors).toEqual([]);
  });

  it("a step whose name or key cannot be recorded fails the task for good before its function runs", async () => {
    const registry = h.track(new TaskRegistry(await factory.open()));
    const steps: [string, unknown, unknown, string][] = [
      ["no name", "", undefined, "$.name"],
      ["lone surrogate", "bad \uD800", undefined, "$.name"],
      ["long name", "n".repeat(1025), undefined, "$.name"],
      ["not a string", 5, undefined, "$.name"],
      ["bigint key", "s", { key: 2n ** 70n }, '$.step("s").key'],
      ["function key", "s", { key: () => 1 }, '$.step("s").key'],
      ["null options", "s", null, "$"],
    ];
    let ran = 0;
    const ids = new Map<string, TaskId>();
    for (const [kind] of steps)
      ids.set(kind, await registry.submit(kind, null, { maxAttempts: 3 }));
    const ended = [...ids.values()].map((id) => settled(registry, id));
    for (const [kind, name, options] of steps) {
      h.work(registry, kind, async (_task, ctx) => {
        await ctx.step(bad(name), () => ++ran, bad(options));
      });
    }
    expect(await Promise.all(ended)).toEqual(steps.map(() => "failed"));
    expect(ran).toBe(0);
    for (const [kind, , , path] of steps) {
      const record = await registry.inspect(ids.get(kind) as TaskId);
      expect(record.runs, kind).toBe(1);
      const message = record.lastError?.kind === "step_failed" ? record.lastError.message : "";
      expect(message, kind).toContain(`validation error at ${path}: `);
      expect(record.task.checkpoint?.steps ?? [], kind).toEqual([]);
    }
    expect(h.errors).toEqual([]);
    // A name of 1024 characters is taken.
    const id = await registry.submit("long", null);
    const done = settled(registry, id);
    h.work(registry, "long", (_task, ctx) => ctx.step("n".repeat(1024), () => 1));
    expect(await done).toBe("completed");
  });

  it("a step returning a value 509 deep (one past a step output's 508) fails the task, recorded as a failed step without output", async () => {
    const registry = h.track(new TaskRegistry(await factory.open()));
    const id = await registry.submit("deep", null, { maxAttempts: 1 });
    const ended = settled(registry, id);
    h.work(registry, "deep", async (_task, ctx) => {
      await ctx.step("fine", () => nested(508));
      await ctx.step("deep", () => nested(509));
    });
    expect(await ended).toBe("failed");
    const record = await registry.inspect(id);
    expect(JSON.stringify(record.lastError)).toContain("nesting deeper than 512");
    const steps = (await registry.loadCheckpoint(id))?.steps ?? [];
    expect(steps.map((s) => [s.status, s.output])).toEqual([
      ["ok", nested(508)],
      ["err", null],
    ]);
    expect(steps[1]?.error).toContain("nesting deeper than 512");
    expect(await registry.get(id)).toEqual(record.task);
  });
});
