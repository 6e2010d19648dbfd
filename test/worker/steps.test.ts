/**
 * The worker and its durable steps (src/worker), on every backend: what a run stores, how a
 * resumed run replays its checkpoint (spec §5), failures, cancel, stop, concurrency, events;
 * then, on a SQLite file, that appending steps does not rewrite the task document.
 */
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import type { RegistryBackend } from "../../src/backend/port.js";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import { openRegistry } from "../../src/open.js";
import { TaskRegistry } from "../../src/registry.js";
import { writeStep } from "../../src/wire/codec.js";
import { contentHash, identityHash } from "../../src/wire/hash.js";
import type { Json } from "../../src/wire/json.js";
import type { Step, Task } from "../../src/wire/schema.js";
import type { WorkContext } from "../../src/worker/context.js";
import type { WorkHandler } from "../../src/worker/worker.js";
import { BACKENDS, tempDbPath } from "../support/backends.js";
import { makeCrux, stepRecord } from "../support/crux.js";
import { rejection } from "../support/rejection.js";
import { Harness, nextEvent, recordEvents, settled, sleep, TIMESTAMP, u64 } from "./helpers.js";

const h = new Harness();
afterEach(() => h.cleanup());

/** Fast retries, so a failed run is claimed again at once. */
const FAST_RETRY = { retryBackoff: { baseMs: 1, maxMs: 1 } } as const;

/** Steps a, b, c that count their executions and return their name and run number. */
function countingSteps() {
  const calls = { a: 0, b: 0, c: 0 };
  const step = (ctx: WorkContext, name: "a" | "b" | "c") =>
    ctx.step(name, () => {
      calls[name]++;
      return `${name}${ctx.claimed.runs}`;
    });
  return { calls, step };
}

describe.each(BACKENDS)("durable steps on $name", (factory) => {
  async function open(): Promise<{ registry: TaskRegistry; backend: RegistryBackend }> {
    const backend = await factory.open();
    const registry = h.track(new TaskRegistry(backend, FAST_RETRY));
    return { registry, backend };
  }

  it("a three-step run stores each step with the spec's wire fields and finishes done", async () => {
    const { registry, backend } = await open();
    const id = await registry.submit("job", { repo: "cruxx" });
    const done = settled(registry, id);
    h.work(registry, "job", async (task, ctx) => {
      expect(ctx.input).toEqual({ repo: "cruxx" });
      expect(task.id).toBe(id);
      const a = await ctx.step("fetch", () => ({ n: 1 }));
      const b = await ctx.step("parse", async () => [1, 2.5], { key: { url: "https://x" } });
      const c = await ctx.step("draft", () => "text");
      return { a, b, c };
    });
    expect(await done).toBe("completed");

    const task = await registry.get(id);
    expect(task.status).toBe("done");
    const checkpoint = task.checkpoint;
    expect(checkpoint).not.toBeNull();
    expect(checkpoint?.value).toEqual({ Ok: { a: { n: 1 }, b: [1, 2.5], c: "text" } });
    expect(checkpoint?.finished_at).toMatch(TIMESTAMP);
    const expected: [string, Json, bigint | null][] = [
      ["fetch", { n: 1 }, null],
      ["parse", [1, 2.5], contentHash({ url: "https://x" })],
      ["draft", "text", null],
    ];
    expect(checkpoint?.steps).toEqual(
      expected.map(([name, output, content], ordinal) => ({
        name,
        kind: "plain",
        status: "ok",
        confidence: 1,
        started_at: expect.stringMatching(TIMESTAMP),
        duration_ms: expect.any(Number),
        input_hash: identityHash(name, ordinal),
        content_hash: content,
        output,
        error: null,
        attempt: 1,
        events: [],
        metadata: {},
      })),
    );

    // The stored bytes, field by field in the Rust order: `confidence` as `1.0`, u64 hashes
    // exact, `events`/`metadata` absent when empty.
    const raw = (await backend.get(id)) as string;
    for (const [ordinal, step] of (checkpoint?.steps ?? []).entries()) {
      const [name, , content] = expected[ordinal] as [string, Json, bigint | null];
      const outputText = name === "fetch" ? '{"n":1}' : name === "parse" ? "[1,2.5]" : '"text"';
      expect(raw).toContain(
        `{"name":"${name}","kind":"plain","status":"ok","confidence":1.0,` +
          `"started_at":"${step.started_at}","duration_ms":${step.duration_ms},` +
          `"input_hash":${identityHash(name, ordinal)},"content_hash":${content === null ? "null" : content},` +
          `"output":${outputText},"error":null,"attempt":1}`,
      );
    }
    expect(raw).toContain(`"value":{"Ok":{"a":{"n":1},"b":[1,2.5],"c":"text"}}`);
    expect(h.errors).toEqual([]);
  });

  it("each step is stored before the next one starts", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    const seenInsideSecond: Step[][] = [];
    const seenInsideThird: Step[][] = [];
    h.work(registry, "job", async (_task, ctx) => {
      await ctx.step("one", () => "first");
      await ctx.step("two", async () => {
        seenInsideSecond.push([...((await registry.get(id)).checkpoint?.steps ?? [])]);
        return "second";
      });
      await ctx.step("three", async () => {
        seenInsideThird.push([...((await registry.get(id)).checkpoint?.steps ?? [])]);
        return "third";
      });
      return null;
    });
    expect(await done).toBe("completed");
    expect(seenInsideSecond.map((steps) => steps.map((s) => [s.name, s.output]))).toEqual([
      [["one", "first"]],
    ]);
    expect(seenInsideThird.map((steps) => steps.map((s) => [s.name, s.output]))).toEqual([
      [
        ["one", "first"],
        ["two", "second"],
      ],
    ]);
  });

  it("a resumed run replays stored steps without running them and runs the rest live", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    const events = recordEvents(registry, () => id);
    const calls = { a: 0, b: 0, c: 0 };
    const runs: number[] = [];
    h.work(registry, "job", async (_task, ctx) => {
      runs.push(ctx.claimed.runs);
      const a = await ctx.step("a", () => {
        calls.a++;
        return { v: "a" };
      });
      const b = await ctx.step("b", () => {
        calls.b++;
        return 2;
      });
      if (ctx.claimed.runs === 1) throw new Error("crash after two steps");
      const c = await ctx.step("c", () => {
        calls.c++;
        return [a, b];
      });
      return { a, b, c };
    });
    expect(await done).toBe("completed");

    expect(runs).toEqual([1, 2]);
    expect(calls).toEqual({ a: 1, b: 1, c: 1 });
    const task = await registry.get(id);
    expect(task.checkpoint?.value).toEqual({ Ok: { a: { v: "a" }, b: 2, c: [{ v: "a" }, 2] } });
    expect(task.checkpoint?.steps.map((s) => [s.name, s.status, s.output])).toEqual([
      ["a", "ok", { v: "a" }],
      ["b", "ok", 2],
      ["c", "ok", [{ v: "a" }, 2]],
    ]);
    expect(task.checkpoint?.steps[2]?.attempt).toBe(2);
    expect(
      events
        .filter((e) => e.name === "step" || e.name === "retried")
        .map((e) =>
          e.name === "step" && "replayed" in e.event
            ? [e.event.name, e.event.ordinal, e.event.replayed]
            : [e.name, "error" in e.event ? e.event.error : undefined],
        ),
    ).toEqual([
      ["a", 0, false],
      ["b", 1, false],
      ["retried", { kind: "step_failed", step: "", message: "crash after two steps" }],
      ["a", 0, true],
      ["b", 1, true],
      ["c", 2, false],
    ]);
    expect((await registry.inspect(id)).runs).toBe(2);
  });

  it("spec §5: a replayed step is recorded again with attempt 0 and duration_ms 0", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    h.work(registry, "job", async (_task, ctx) => {
      await ctx.step("a", async () => {
        await sleep(5); // a live step with a measurable duration
        return "A";
      });
      if (ctx.claimed.runs === 1) throw new Error("crash after one step");
      await ctx.step("b", () => "B");
      return "ok";
    });
    expect(await done).toBe("completed");
    const steps = (await registry.get(id)).checkpoint?.steps ?? [];
    expect(steps.map((s) => [s.name, s.output, s.attempt])).toEqual([
      ["a", "A", 0],
      ["b", "B", 2],
    ]);
    expect(steps[0]?.duration_ms).toBe(0);
  });

  it("a step whose fn throws is stored as err with a null output and runs again on the retry", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    const retried = nextEvent(registry, "retried", (e) => e.id === id);
    let okCalls = 0;
    let flakyCalls = 0;
    const claimedCheckpoints: (Step[] | undefined)[] = [];
    h.work(registry, "job", async (task, ctx) => {
      claimedCheckpoints.push(task.checkpoint?.steps.slice());
      await ctx.step("ok", () => {
        okCalls++;
        return 1;
      });
      const data = await ctx.step("flaky", () => {
        flakyCalls++;
        if (ctx.claimed.runs === 1) throw new Error("network error");
        return "data";
      });
      const after = await ctx.step("after", () => "z"); // appended after the replaced step
      return [data, after];
    });
    expect((await retried).error).toEqual({
      kind: "step_failed",
      step: "flaky",
      message: "network error",
    });
    expect(await done).toBe("completed");

    // What run 2 was handed: run 1's record, the failed step with no output.
    const afterRun1 = claimedCheckpoints[1] ?? [];
    expect(afterRun1.map((s) => [s.name, s.status, s.output, s.error, s.attempt])).toEqual([
      ["ok", "ok", 1, null, 1],
      ["flaky", "err", null, "network error", 1],
    ]);
    expect(afterRun1[1]?.input_hash).toBe(identityHash("flaky", 1));
    expect({ okCalls, flakyCalls }).toEqual({ okCalls: 1, flakyCalls: 2 });

    const task = await registry.get(id);
    expect(task.checkpoint?.value).toEqual({ Ok: ["data", "z"] });
    expect(task.checkpoint?.steps.map((s) => [s.name, s.status, s.output, s.error])).toEqual([
      ["ok", "ok", 1, null],
      ["flaky", "ok", "data", null],
      ["after", "ok", "z", null],
    ]);
    expect(task.checkpoint?.steps[1]?.attempt).toBe(2);
  });

  it("strict replay: another step at a stored ordinal fails the task for good with replay_mismatch", async () => {
    const { registry, backend } = await open();
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    let bCalls = 0;
    h.work(registry, "job", async (_task, ctx) => {
      if (ctx.claimed.runs === 1) {
        await ctx.step("a", () => "A");
        throw new Error("crash");
      }
      await ctx.step("b", () => {
        bCalls++;
        return "B";
      });
      return "unreachable";
    });
    expect(await done).toBe("failed");
    expect(bCalls).toBe(0);
    const record = await registry.inspect(id);
    expect(record.task.status).toBe("failed");
    expect(record.runs).toBe(2); // not retried although maxAttempts (3) allows another run
    const err = {
      kind: "replay_mismatch",
      step: "b",
      expected: u64(identityHash("a", 0)),
      actual: u64(identityHash("b", 0)),
    };
    expect(record.task.checkpoint?.value).toEqual({ Err: err });
    expect(record.lastError).toEqual(err);
    expect(await backend.get(id)).toContain(
      `"value":{"Err":{"kind":"replay_mismatch","step":"b","expected":${identityHash("a", 0)},"actual":${identityHash("b", 0)}}}`,
    );
  });

  it("lenient replay: a reordered step is answered by the later stored step of that name", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    const { calls, step } = countingSteps();
    h.work(
      registry,
      "job",
      async (_task, ctx) => {
        if (ctx.claimed.runs === 1) {
          await step(ctx, "a");
          await step(ctx, "b");
          await step(ctx, "c");
          throw new Error("crash");
        }
        // Reordered: b first. b is found later in the cache; a (stored before ordinal 1) is
        // not a later entry, so it runs live; c matches its own ordinal.
        const b = await step(ctx, "b");
        const a = await step(ctx, "a");
        const c = await step(ctx, "c");
        return [b, a, c];
      },
      { replay: "lenient" },
    );
    expect(await done).toBe("completed");
    expect(calls).toEqual({ a: 2, b: 1, c: 1 });
    expect((await registry.get(id)).checkpoint?.value).toEqual({ Ok: ["b1", "a2", "c1"] });
  });

  it("lenient replay: a step that succeeded is never run again, however often the run resumes", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null, { maxAttempts: 5 });
    const done = settled(registry, id);
    const { calls, step } = countingSteps();
    h.work(
      registry,
      "job",
      async (_task, ctx) => {
        if (ctx.claimed.runs === 1) {
          await step(ctx, "a");
          await step(ctx, "b");
          await step(ctx, "c");
          throw new Error("crash 1");
        }
        const b = await step(ctx, "b");
        const a = await step(ctx, "a");
        const c = await step(ctx, "c");
        if (ctx.claimed.runs === 2) throw new Error("crash 2");
        return [b, a, c];
      },
      { replay: "lenient" },
    );
    expect(await done).toBe("completed");
    // b succeeded in run 1 (output "b1"): runs 2 and 3 must both replay it.
    expect(calls.b).toBe(1);
    expect((await registry.get(id)).checkpoint?.value).toEqual({ Ok: ["b1", "a2", "c1"] });
  });

  it("lenient replay: a stored step whose content_hash differs is skipped", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    const live: string[] = [];
    h.work(
      registry,
      "job",
      async (_task, ctx) => {
        const fetch = (url: string, name = "fetch") =>
          ctx.step(
            name,
            () => {
              live.push(`${url}@${ctx.claimed.runs}`);
              return `page ${url} (run ${ctx.claimed.runs})`;
            },
            { key: url },
          );
        if (ctx.claimed.runs === 1) {
          await ctx.step("start", () => "s");
          await fetch("u1");
          await fetch("u2");
          throw new Error("crash");
        }
        // Ordinal 0 misses ("start" is stored there); the scan skips fetch(u1) for its key
        // and takes fetch(u2). Then a step of a new name runs live.
        const second = await fetch("u2");
        const third = await fetch("u3", "other");
        return [second, third];
      },
      { replay: "lenient" },
    );
    expect(await done).toBe("completed");
    expect(live).toEqual(["u1@1", "u2@1", "u3@2"]);
    expect((await registry.get(id)).checkpoint?.value).toEqual({
      Ok: ["page u2 (run 1)", "page u3 (run 2)"],
    });
  });

  it("lenient replay: with no stored step of the same key, the step runs live", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    const live: string[] = [];
    h.work(
      registry,
      "job",
      async (_task, ctx) => {
        const fetch = (url: string) =>
          ctx.step(
            "fetch",
            () => {
              live.push(`${url}@${ctx.claimed.runs}`);
              return url;
            },
            { key: url },
          );
        if (ctx.claimed.runs === 1) {
          await ctx.step("start", () => "s");
          await fetch("u1");
          throw new Error("crash");
        }
        return fetch("u9"); // ordinal 0 misses; the only later fetch has key u1
      },
      { replay: "lenient" },
    );
    expect(await done).toBe("completed");
    expect(live).toEqual(["u1@1", "u9@2"]);
  });

  it.each([
    ["a function", () => () => 1],
    ["a Date", () => new Date(0)],
  ])(
    "a step result that is not JSON (%s) fails the task for good with step_failed naming the step",
    async (_label, make) => {
      const { registry } = await open();
      const id = await registry.submit("job", null, { maxAttempts: 3 });
      const done = settled(registry, id);
      h.work(registry, "job", async (_task, ctx) => {
        await ctx.step("fine", () => 1);
        await ctx.step("weird", make as () => unknown);
        return "unreachable";
      });
      expect(await done).toBe("failed");
      const record = await registry.inspect(id);
      expect(record.lastError).toMatchObject({ kind: "step_failed", step: "weird" });
      expect(record.lastError?.kind === "step_failed" && record.lastError.message).toMatch(
        /^its result cannot be stored: validation error at \$\.step\("weird"\)\.output: /,
      );
      expect(record.runs).toBe(1);
      expect(record.task.checkpoint?.value).toEqual({ Err: record.lastError });
      expect(h.errors).toEqual([]);
    },
  );

  it("a handler result that is not JSON fails the task for good with a clear error, and the worker carries on", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", "bad", { maxAttempts: 3 });
    const retried = vi.fn();
    registry.on("retried", retried);
    const failed = nextEvent(registry, "failed", (e) => e.id === id);
    const handler: WorkHandler = async (task) => (task.input === "bad" ? { f: () => 1 } : "good");
    h.work(registry, "job", handler);

    const { error } = await failed;
    expect(error).toMatchObject({ kind: "step_failed", step: "" });
    const message = error.kind === "step_failed" ? error.message : "";
    expect(message).toMatch(/^the handler's result cannot be stored: .*\$\.value\.f/);
    expect(message).toContain("not a JSON value");
    const record = await registry.inspect(id);
    expect(record.task.status).toBe("failed");
    expect(record.runs).toBe(1); // the same result would come back on every run
    expect(retried).not.toHaveBeenCalled();
    expect(record.lastError).toEqual(error);

    const good = await registry.submit("job", "fine");
    const goodDone = settled(registry, good);
    expect(await goodDone).toBe("completed");
    expect((await registry.get(good)).checkpoint?.value).toEqual({ Ok: "good" });
    expect(h.errors).toEqual([]);
  });

  it("a handler error that merely has a `kind` field still ends the run at once", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null, { maxAttempts: 1 });
    const failed = nextEvent(registry, "failed", (e) => e.id === id);
    h.work(registry, "job", async () => {
      throw Object.assign(new Error("HTTP 503"), { kind: "http" });
    });
    // Lease is 30 s by default: if fail() is never stored, only lease expiry would end the run.
    const event = await failed.catch((error: Error) => {
      const loopErrors = h.errors.map((e) => (e instanceof Error ? `${e.name}: ${e.message}` : e));
      throw new Error(`${error.message}; worker loop errors: ${JSON.stringify(loopErrors)}`);
    });
    expect(event.error).toEqual({ kind: "step_failed", step: "", message: "HTTP 503" });
    expect(h.errors).toEqual([]);
  });

  it("cancel() of a running task aborts ctx.signal at the next heartbeat (every 100 ms here); failed, not retried", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const events = recordEvents(registry, () => id);
    const started = h.gate();
    let reason: unknown;
    h.work(
      registry,
      "job",
      async (_task, ctx) => {
        await ctx.step("a", () => 1);
        started.open();
        // Runs no more steps: only the heartbeat can tell it about the cancel.
        await new Promise((_resolve, reject) => {
          ctx.signal.addEventListener(
            "abort",
            () => {
              reason = ctx.signal.reason;
              reject(ctx.signal.reason);
            },
            { once: true },
          );
        });
      },
      { leaseMs: 3000, heartbeatMs: 100 },
    );
    await started.opened;
    const done = settled(registry, id);
    expect(await registry.cancel(id, "user asked")).toBe(true);
    expect(await done).toBe("failed");

    expect(reason).toMatchObject({ err: { kind: "cancelled" } });
    const record = await registry.inspect(id);
    expect(record.task.status).toBe("failed");
    expect(record.runs).toBe(1);
    expect(record.task.checkpoint?.value).toEqual({
      Err: { kind: "cancelled", reason: expect.any(String) },
    });
    expect(events.map((e) => e.name)).toEqual([
      "claimed",
      "step",
      "cancelled",
      "failed", // no `retried`
    ]);
  });

  it("cancel() of a running task stops it at its next ctx.step", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const started = h.gate();
    const go = h.gate();
    let bCalls = 0;
    // The default lease (30 s) puts the first heartbeat 10 s away: only the step can notice.
    h.work(registry, "job", async (_task, ctx) => {
      await ctx.step("a", () => 1);
      started.open();
      await go.opened;
      await ctx.step("b", () => {
        bCalls++;
        return 2;
      });
      return "finished anyway";
    });
    await started.opened;
    const done = settled(registry, id);
    expect(await registry.cancel(id, "user asked")).toBe(true);
    go.open();
    expect(await done).toBe("failed");
    expect(bCalls).toBe(0);
    const record = await registry.inspect(id);
    expect(record.task.checkpoint?.value).toMatchObject({ Err: { kind: "cancelled" } });
    expect(record.runs).toBe(1);
  });

  it("stop() waits for a handler that finishes", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const claimed = nextEvent(registry, "claimed", (e) => e.id === id);
    const worker = h.work(registry, "job", async (_task, ctx) => {
      await ctx.step("a", () => 1);
      await sleep(100);
      return "finished";
    });
    await claimed;
    await worker.stop();
    const record = await registry.inspect(id);
    expect(record.task.status).toBe("done");
    expect(record.task.checkpoint?.value).toEqual({ Ok: "finished" });
    expect(worker.inFlight).toBe(0);
  });

  it("stop({timeoutMs}) gives back a handler that never finishes; its late writes are refused", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const started = h.gate();
    const hang = h.gate();
    let firstCtx: WorkContext | undefined;
    let lateStep: unknown = "not tried";
    const firstHandlerDone = h.gate();
    const first = h.work(
      registry,
      "job",
      async (_task, ctx) => {
        firstCtx = ctx;
        await ctx.step("a", () => "from run 1");
        started.open();
        await hang.opened; // ignores ctx.signal
        lateStep = await ctx
          .step("late", () => "late")
          .then(
            () => "stored",
            (error: unknown) => error,
          );
        firstHandlerDone.open();
        return "from the first worker";
      },
      { owner: "first" },
    );
    await started.opened;
    const token = firstCtx?.claimed.lease.token as string;

    await first.stop({ timeoutMs: 200 });
    expect(firstCtx?.signal.aborted).toBe(true);
    const released = await registry.inspect(id);
    expect(released.task.status).toBe("pending");
    expect(released.lease).toBeNull();

    const done = settled(registry, id);
    let secondCalls = 0;
    h.work(
      registry,
      "job",
      async (_task, ctx) => {
        const a = await ctx.step("a", () => {
          secondCalls++;
          return "from run 2";
        });
        return { a };
      },
      { owner: "second" },
    );
    expect(await done).toBe("completed");
    expect(secondCalls).toBe(0); // run 1's stored step was replayed
    const finished = await registry.inspect(id);
    expect(finished.task.checkpoint?.value).toEqual({ Ok: { a: "from run 1" } });

    // The first run's lease is gone: direct writes under it are refused...
    const stepErr = await rejection(
      registry.recordStep(id, token, 1, stepRecord("late", identityHash("late", 1), "x")),
    );
    expect(stepErr).toMatchObject({ code: "LEASE_LOST" });
    expect(await rejection(registry.complete(id, token, "late"))).toMatchObject({
      code: "LEASE_LOST",
    });
    // ...and when its handler finally moves on, its step and result change nothing.
    hang.open();
    await firstHandlerDone.opened;
    expect(lateStep).toMatchObject({ err: { kind: "cancelled" } }); // refused: the run was given back
    await sleep(50); // let #execute see the returned value
    expect(await registry.inspect(id)).toEqual(finished);
  });

  it("runs at most `concurrency` handlers at once", async () => {
    const { registry } = await open();
    const ids = await registry.submitMany(
      Array.from({ length: 6 }, (_, i) => ({ kind: "job", input: i })),
    );
    const all = Promise.all(ids.map((id) => settled(registry, id)));
    const release = h.gate();
    let inFlight = 0;
    let maxInFlight = 0;
    let claims = 0;
    registry.on("claimed", () => {
      claims++;
    });
    const threeClaimed = new Promise<void>((resolve) => {
      const off = registry.on("claimed", () => {
        if (claims >= 3) {
          off();
          resolve();
        }
      });
    });
    const worker = h.work(
      registry,
      "job",
      async (task) => {
        inFlight++;
        maxInFlight = Math.max(maxInFlight, inFlight);
        await release.opened;
        inFlight--;
        return task.input;
      },
      { concurrency: 3 },
    );
    await threeClaimed;
    await sleep(200); // a fourth claim now would be a bug; none must happen while 3 run
    expect(claims).toBe(3);
    expect(worker.inFlight).toBe(3);
    release.open();
    expect(await all).toEqual(Array(6).fill("completed"));
    expect(maxInFlight).toBe(3);
    expect(claims).toBe(6);
  });

  it("a full run's events arrive in order: submitted, claimed, step × n, completed", async () => {
    const { registry } = await open();
    let id: string | undefined;
    const events = recordEvents(registry, () => id);
    const first = nextEvent(registry, "submitted");
    const submitted = registry.submit("job", null);
    id = (await first).id;
    expect(await submitted).toBe(id);
    const done = settled(registry, id);
    h.work(registry, "job", async (_task, ctx) => {
      for (const name of ["x", "y", "z"]) await ctx.step(name, () => name);
      return "ok";
    });
    expect(await done).toBe("completed");
    expect(events.map((e) => [e.name, "ordinal" in e.event ? e.event.ordinal : null])).toEqual([
      ["submitted", null],
      ["claimed", null],
      ["step", 0],
      ["step", 1],
      ["step", 2],
      ["completed", null],
    ]);
  });

  it("checkpoint(id, crux) on a running task with appended steps replaces the whole checkpoint", async () => {
    const { registry } = await open();
    const id = await registry.submit("job", null);
    const stepped = h.gate();
    const go = h.gate();
    const done = settled(registry, id);
    h.work(registry, "job", async (_task, ctx) => {
      await ctx.step("one", () => 1);
      await ctx.step("two", () => 2);
      stepped.open();
      await go.opened;
      return "after";
    });
    await stepped.opened;
    expect((await registry.get(id)).checkpoint?.steps.map((s) => s.name)).toEqual(["one", "two"]);

    const crux = makeCrux();
    await registry.checkpoint(id, crux);
    const replaced = await registry.get(id);
    expect(replaced.checkpoint).toEqual(crux);
    expect(replaced.attempts).toBe(1);
    expect(replaced.status).toBe("running");

    go.open();
    expect(await done).toBe("completed");
    const task: Task = await registry.get(id);
    expect(task.checkpoint?.steps).toEqual(crux.steps);
    expect(task.checkpoint?.value).toEqual({ Ok: "after" });
  });
});

describe("durable steps on a SQLite file", () => {
  /** A task's rows in task_steps, which are keyed by the task's seq. */
  const STEPS_OF = "task = (select seq from tasks where id = ?)";

  it("another connection sees each step before the next starts", async () => {
    const path = tempDbPath();
    const registry = h.track(await openRegistry(path));
    const other = h.track(await openRegistry(path));
    const id = await registry.submit("job", null);
    const done = settled(registry, id);
    const seen: string[][] = [];
    h.work(registry, "job", async (_task, ctx) => {
      for (const name of ["one", "two", "three"]) {
        await ctx.step(name, async () => {
          seen.push(((await other.get(id)).checkpoint?.steps ?? []).map((s) => s.name));
          return name;
        });
      }
      return null;
    });
    expect(await done).toBe("completed");
    expect(seen).toEqual([[], ["one"], ["one", "two"]]);
  });

  it("checkpoint(id, crux) removes the appended step rows", async () => {
    const path = tempDbPath();
    const registry = h.track(await openRegistry(path));
    const id = await registry.submit("job", null);
    const stepped = h.gate();
    const go = h.gate();
    const done = settled(registry, id);
    h.work(registry, "job", async (_task, ctx) => {
      await ctx.step("one", () => 1);
      await ctx.step("two", () => 2);
      stepped.open();
      await go.opened;
      return "after";
    });
    await stepped.opened;
    const db = new Database(path, { fileMustExist: true });
    try {
      const rows = db.prepare(`select count(*) as n from task_steps where ${STEPS_OF}`);
      expect(rows.get(id)).toEqual({ n: 2 });
      await registry.checkpoint(id, makeCrux());
      expect(rows.get(id)).toEqual({ n: 0 });
    } finally {
      db.close();
    }
    go.open();
    expect(await done).toBe("completed");
    expect((await registry.get(id)).checkpoint?.steps.map((s) => s.name)).toEqual(["fetch"]);
  });

  it("1,000 steps are appended as rows without rewriting the task document", {
    timeout: 120_000,
  }, async () => {
    const STEPS = 1000;
    const path = tempDbPath();
    const backend = await SqliteBackend.open(path);
    const registry = h.track(new TaskRegistry(backend));
    const id = await registry.submit("big", null);
    const done = settled(registry, id, 110_000);
    const db = new Database(path, { fileMustExist: true });
    // The document as last written whole: the run's state and steps are spliced into it on read.
    const storedData = db.prepare("select data from tasks where id = ?").pluck();
    const submitted = storedData.get(id) as string;
    const rowStats = db.prepare(
      `select count(*) as count, coalesce(sum(length(data)), 0) as bytes from task_steps where ${STEPS_OF}`,
    );
    const pageBytes = () =>
      (db.pragma("page_count", { simple: true }) as number) *
      (db.pragma("page_size", { simple: true }) as number);
    const payload = (i: number) => `${String(i).padStart(6, "0")}${"x".repeat(1018)}`; // 1 KiB
    const probes: { at: number; data: string; rows: number }[] = [];
    let recorded: { ordinal: number; data: string }[] = [];
    let duringRun = { storedBytes: 0, fileBytes: 0 };
    try {
      h.work(
        registry,
        "big",
        async (_task, ctx) => {
          for (let i = 0; i < STEPS; i++) {
            await ctx.step(`s${i}`, () => payload(i));
            if (i + 1 === 10 || i + 1 === 900) {
              const stats = rowStats.get(id) as { count: number };
              probes.push({
                at: i + 1,
                data: storedData.get(id) as string,
                rows: stats.count,
              });
            }
          }
          recorded = db
            .prepare(`select ordinal, data from task_steps where ${STEPS_OF} order by ordinal`)
            .all(id) as { ordinal: number; data: string }[];
          duringRun = {
            storedBytes: (rowStats.get(id) as { bytes: number }).bytes,
            fileBytes: pageBytes(),
          };
          return STEPS;
        },
        // No heartbeat during the run, so this measures appends alone (see the next test).
        { leaseMs: 3_600_000 },
      );
      expect(await done).toBe("completed");

      // Appends are inserts: the stored document is the submitted one after 10 and 900 steps.
      expect(probes.map((p) => [p.at, p.rows])).toEqual([
        [10, 10],
        [900, 900],
      ]);
      expect(probes.map((p) => p.data)).toEqual([submitted, submitted]);

      // Every step was a row, in order, holding exactly the step's JSON.
      expect(recorded.map((r) => r.ordinal)).toEqual(Array.from({ length: STEPS }, (_, i) => i));
      const jsonBytes = recorded.reduce((n, r) => n + Buffer.byteLength(r.data), 0);
      expect(duringRun.storedBytes).toBe(jsonBytes);

      // After completion the steps read back in the document, equal to what was recorded.
      const document = (await backend.get(id)) as string;
      const steps = (await registry.get(id)).checkpoint?.steps ?? [];
      expect(steps).toHaveLength(STEPS);
      for (const [i, step] of steps.entries()) {
        if (writeStep(step, "$") !== recorded[i]?.data) {
          expect(writeStep(step, "$"), `step ${i}`).toBe(recorded[i]?.data);
        }
        if (step.output !== payload(i)) expect(step.output, `output ${i}`).toBe(payload(i));
      }
      // Completion folded the steps into the document: stored once, and no rows are left.
      expect(rowStats.get(id)).toEqual({ count: 0, bytes: 0 });
      expect(storedData.get(id)).toBe(document);
      const fileAfter = pageBytes();
      const documentBytes = Buffer.byteLength(document);
      console.log(
        `1000 steps of 1 KiB: step JSON ${jsonBytes} B; task_steps data ${duringRun.storedBytes} B; ` +
          `file pages during the run ${duringRun.fileBytes} B (${(duringRun.fileBytes / jsonBytes).toFixed(3)}× the step JSON); ` +
          `after completion: document ${documentBytes} B, file pages ${fileAfter} B (${(fileAfter / jsonBytes).toFixed(3)}×)`,
      );
    } finally {
      db.close();
    }
  });

  it("heartbeats leave appended steps as rows: the document is not rewritten mid-run", {
    timeout: 30_000,
  }, async () => {
    const path = tempDbPath();
    const registry = h.track(await openRegistry(path));
    const id = await registry.submit("job", null);
    const done = settled(registry, id, 25_000);
    const db = new Database(path, { fileMustExist: true });
    const storedData = db.prepare("select data from tasks where id = ?").pluck();
    const submitted = storedData.get(id);
    const rowCount = db.prepare(`select count(*) from task_steps where ${STEPS_OF}`).pluck();
    const seen: { data: unknown; rows: unknown; heartbeats: number }[] = [];
    try {
      h.work(
        registry,
        "job",
        async (_task, ctx) => {
          for (let i = 0; i < 20; i++) await ctx.step(`s${i}`, () => i);
          seen.push({ data: storedData.get(id), rows: rowCount.get(id), heartbeats: 0 });
          // Wait (bounded) until the lease was extended twice by heartbeats.
          const first = (await registry.inspect(id)).lease?.expiresAt ?? 0;
          let heartbeats = 0;
          let last = first;
          for (let waited = 0; heartbeats < 2 && waited < 10_000; waited += 20) {
            await sleep(20);
            const now = (await registry.inspect(id)).lease?.expiresAt ?? 0;
            if (now > last) {
              heartbeats++;
              last = now;
            }
          }
          for (let i = 20; i < 40; i++) await ctx.step(`s${i}`, () => i);
          seen.push({ data: storedData.get(id), rows: rowCount.get(id), heartbeats });
          return "ok";
        },
        { leaseMs: 3000, heartbeatMs: 100 },
      );
      expect(await done).toBe("completed");
      expect(seen[1]?.heartbeats).toBe(2);
      expect(seen.map((s) => s.rows)).toEqual([20, 40]);
      expect(seen.map((s) => s.data)).toEqual([submitted, submitted]);
      expect((await registry.get(id)).checkpoint?.steps).toHaveLength(40);
    } finally {
      db.close();
    }
  });
});
