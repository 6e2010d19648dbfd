/**
 * How an idle worker learns there is work: a submit in this process, a commit by another
 * process (the SQLite adapter's change feed: PRAGMA data_version and a WAL watch), a delayed
 * task falling due, an expired lease; and that idling is not a hot loop, nor polling at all
 * on a backend without a change feed. Timeouts here are generous bounds against hanging, never speed claims;
 * `pollIntervalMs: 60_000` makes sure polling cannot explain a prompt claim.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it, vi } from "vitest";
import { MemoryBackend } from "../../src/backend/memory.js";
import type { Batch } from "../../src/backend/port.js";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import { openRegistry } from "../../src/open.js";
import { TaskRegistry } from "../../src/registry.js";
import { identityHash } from "../../src/wire/hash.js";
import { BACKENDS, tempDbPath } from "../support/backends.js";
import { killChildren, startScript } from "../support/child.js";
import { stepRecord } from "../support/crux.js";
import { countingBackend, Harness, nextEvent, recordEvents, settled, sleep } from "./helpers.js";
import type { ChildConfig } from "./wakeup-child.js";

const CHILD = join(dirname(fileURLToPath(import.meta.url)), "wakeup-child.ts");
const NO_POLLING = 60_000;

const h = new Harness();
afterEach(async () => {
  killChildren();
  await h.cleanup();
});

describe.each(BACKENDS)("an idle worker on $name", (factory) => {
  it("picks up a task submitted in this process after it went idle", async () => {
    const counting = countingBackend(await factory.open());
    const registry = h.track(new TaskRegistry(counting.backend));
    h.work(registry, "job", async () => "ok", { pollIntervalMs: NO_POLLING });
    // Asking when to wake means the loop is past its first claim and going to sleep.
    await counting.whenCalled("nextWakeAt");
    const claimsWhileStarting = counting.calls("claim");

    const claimed = nextEvent(registry, "claimed", () => true, 2000);
    const completed = nextEvent(registry, "completed", () => true, 5000);
    const id = await registry.submit("job", null);
    expect((await claimed).id).toBe(id);
    expect((await completed).id).toBe(id);
    expect(counting.calls("claim") - claimsWhileStarting).toBeLessThanOrEqual(3);
    expect(h.errors).toEqual([]);
  });

  it("sleeps until a delayed task falls due, then claims it, not before", async () => {
    const LEASE = 30_000;
    const counting = countingBackend(await factory.open());
    const registry = h.track(new TaskRegistry(counting.backend));
    let claimTime: number | undefined;
    h.work(
      registry,
      "job",
      async (_task, ctx) => {
        claimTime = ctx.claimed.lease.expiresAt - LEASE; // the `now` the claim ran with
        return "ok";
      },
      { pollIntervalMs: NO_POLLING, leaseMs: LEASE },
    );
    await counting.whenCalled("nextWakeAt");
    counting.reset();

    const claimed = nextEvent(registry, "claimed", () => true, 5000);
    const completed = nextEvent(registry, "completed", () => true, 5000);
    const id = await registry.submit("job", null, { delayMs: 300 });
    const { runAt } = await registry.inspect(id);
    expect((await claimed).id).toBe(id);
    expect((await completed).id).toBe(id);
    expect(claimTime).toBeDefined();
    expect(claimTime as number).toBeGreaterThanOrEqual(runAt);
    // Woken by the submit, it found nothing due and slept until runAt: no claim loop.
    expect(counting.calls("claim")).toBeLessThanOrEqual(4);
  });
});

describe("idle workers are not hot loops", () => {
  it("an idle worker on an empty memory backend barely touches it", async () => {
    const counting = countingBackend(new MemoryBackend());
    const registry = h.track(new TaskRegistry(counting.backend));
    const changePollMs = 5;
    h.work(registry, "job", async () => "ok", { changePollMs });
    await counting.whenCalled("nextWakeAt");
    counting.reset();
    await sleep(500);
    expect(counting.calls("claim")).toBeLessThanOrEqual(5);
    expect(counting.calls("nextWakeAt")).toBeLessThanOrEqual(5);
    expect(counting.backend.changes).toBeUndefined(); // nothing to poll
  });

  it("an idle worker on an empty SQLite file reads its change feed at most every changePollMs", async () => {
    const counting = countingBackend(await SqliteBackend.open(tempDbPath()));
    const registry = h.track(new TaskRegistry(counting.backend));
    const changePollMs = 5;
    h.work(registry, "job", async () => "ok", { changePollMs });
    await counting.whenCalled("changes.version", 2);
    counting.reset();
    await sleep(500);
    expect(counting.calls("claim")).toBeLessThanOrEqual(5);
    expect(counting.calls("nextWakeAt")).toBeLessThanOrEqual(5);
    expect(counting.calls("changes.version")).toBeLessThanOrEqual(500 / changePollMs + 20);
  });

  it("on a backend without a change feed, an idle worker sets no timer while it sleeps", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "setInterval", "clearInterval"] });
    try {
      const counting = countingBackend(new MemoryBackend());
      const registry = h.track(new TaskRegistry(counting.backend));
      h.work(registry, "job", async () => "ok", { pollIntervalMs: NO_POLLING, changePollMs: 5 });
      await counting.whenCalled("nextWakeAt");
      await vi.advanceTimersByTimeAsync(0); // into its sleep
      const setTimeoutSpy = vi.spyOn(globalThis, "setTimeout");
      const setIntervalSpy = vi.spyOn(globalThis, "setInterval");
      counting.reset();
      // A change poll would have run 11,000 times by then (changePollMs: 5).
      await vi.advanceTimersByTimeAsync(NO_POLLING - 5000);
      expect(setTimeoutSpy).not.toHaveBeenCalled();
      expect(setIntervalSpy).not.toHaveBeenCalled();
      expect(counting.calls("claim")).toBe(0);
      expect(counting.calls("nextWakeAt")).toBe(0);
      expect(vi.getTimerCount()).toBe(1); // its one sleep, until the poll interval
    } finally {
      vi.useRealTimers();
    }
  });

  it("a due task of a kind the worker does not take does not make it spin (SQLite)", async () => {
    const counting = countingBackend(await SqliteBackend.open(":memory:"));
    const registry = h.track(new TaskRegistry(counting.backend));
    await registry.submit("other", null); // due now; nobody here takes `other`
    h.work(registry, "job", async () => "ok", { pollIntervalMs: NO_POLLING });
    await sleep(100);
    counting.reset();
    await sleep(500);
    expect(counting.calls("claim")).toBeLessThanOrEqual(5);
    expect(counting.calls("nextWakeAt")).toBeLessThanOrEqual(5);
  });

  it("an expired lease not yet swept does not make the worker spin until the next sweep", async () => {
    const counting = countingBackend(new MemoryBackend());
    const registry = h.track(new TaskRegistry(counting.backend));
    const id = await registry.submit("job", null);
    // A worker that claimed it and died: nobody will heartbeat this lease.
    const dead = await registry.claim("job", { owner: "dead", leaseMs: 200 });
    expect(dead?.task.id).toBe(id);
    h.work(registry, "job", async () => "ok", { pollIntervalMs: NO_POLLING });
    await sleep(400); // the lease has expired; the next scheduled sweep is a minute away
    counting.reset();
    await sleep(500);
    expect(counting.calls("claim")).toBeLessThanOrEqual(5);
    expect(counting.calls("nextWakeAt")).toBeLessThanOrEqual(5);
  });
});

describe("lease expiry in this process", () => {
  it.each(BACKENDS)(
    "on $name: a task whose worker died is reclaimed and completed, replaying its steps",
    async (factory) => {
      const registry = h.track(new TaskRegistry(await factory.open()));
      const id = await registry.submit("job", null);
      // A worker that claimed the task, stored one step and died.
      const dead = await registry.claim("job", { owner: "dead", leaseMs: 300 });
      expect(dead?.task.id).toBe(id);
      await registry.recordStep(
        id,
        dead?.lease.token as string,
        0,
        stepRecord("a", identityHash("a", 0), "from the dead run"),
      );

      const reclaimed = nextEvent(registry, "reclaimed", (e) => e.id === id, 5000);
      const done = settled(registry, id);
      let aCalls = 0;
      h.work(
        registry,
        "job",
        async (_task, ctx) => {
          const a = await ctx.step("a", () => {
            aCalls++;
            return "again";
          });
          return a;
        },
        { leaseMs: 300, pollIntervalMs: 100 },
      );
      expect(await reclaimed).toMatchObject({ previousOwner: "dead", status: "pending" });
      expect(await done).toBe("completed");
      expect(aCalls).toBe(0);
      expect((await registry.get(id)).checkpoint?.value).toEqual({ Ok: "from the dead run" });
    },
  );
});

describe("another connection in this process, on the same SQLite file", () => {
  it("a commit landing between the worker's claim and its sleep still wakes it", async () => {
    const path = tempDbPath();
    const other = h.track(await openRegistry(path));
    const inner = await SqliteBackend.open(path);
    let injected: Promise<string> | undefined;
    // Right after the worker's first (empty) claim, another connection submits a task whose
    // runAt has already passed (a schedule time in the past, or a clock a little behind).
    const backend = new Proxy(inner, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        if (typeof value !== "function") return value;
        if (property !== "claim") return value.bind(target);
        return async (...args: unknown[]) => {
          const claimed = (await value.apply(target, args)) as Batch;
          if (injected === undefined && claimed.changed.length === 0) {
            injected = other.submit("job", null, { runAt: Date.now() - 1000 });
            await injected;
          }
          return claimed;
        };
      },
    });
    const registry = h.track(new TaskRegistry(backend));
    const claimed = nextEvent(registry, "claimed", () => true, 5000);
    h.work(registry, "job", async () => "ok", { pollIntervalMs: NO_POLLING });
    const event = await claimed;
    expect(event.id).toBe(await injected);
  });
});

describe("another process on the same SQLite file", () => {
  it("an idle worker claims a task another process submits (data_version watch)", {
    timeout: 60_000,
  }, async () => {
    const path = tempDbPath();
    const counting = countingBackend(await SqliteBackend.open(path));
    const registry = h.track(new TaskRegistry(counting.backend));
    h.work(registry, "job", async (task) => task.input, { pollIntervalMs: NO_POLLING });
    await counting.whenCalled("changes.version", 2);

    const claimed = nextEvent(registry, "claimed", () => true, 30_000);
    const completed = nextEvent(registry, "completed", () => true, 30_000);
    const child = startScript(CHILD, { path, mode: "submit", kind: "job" } satisfies ChildConfig);
    const id = await child.line("submitted");
    expect(await child.exited).toMatchObject({ code: 0, signal: null });
    expect((await claimed).id).toBe(id);
    expect((await completed).id).toBe(id);
    expect((await registry.get(id)).checkpoint?.value).toEqual({ Ok: { from: "child" } });
  });

  it("with no change polling, the WAL watch alone wakes an idle worker for another process's submit", {
    timeout: 60_000,
  }, async () => {
    const path = tempDbPath();
    const counting = countingBackend(await SqliteBackend.open(path));
    const registry = h.track(new TaskRegistry(counting.backend));
    h.work(registry, "job", async (task) => task.input, {
      pollIntervalMs: NO_POLLING,
      changePollMs: NO_POLLING,
    });
    await counting.whenCalled("changes.watch");

    const completed = nextEvent(registry, "completed", () => true, 30_000);
    const child = startScript(CHILD, { path, mode: "submit", kind: "job" } satisfies ChildConfig);
    const id = await child.line("submitted");
    expect((await completed).id).toBe(id);
    expect(h.errors).toEqual([]);
  });

  it("a task whose worker process was SIGKILLed mid-handler is reclaimed, replayed and completed", {
    timeout: 60_000,
  }, async () => {
    const path = tempDbPath();
    const registry = h.track(new TaskRegistry(await SqliteBackend.open(path)));
    const id = await registry.submit("job", { n: 1 });

    const child = startScript(CHILD, {
      path,
      mode: "work",
      kind: "job",
      owner: "child-worker",
      leaseMs: 300,
    } satisfies ChildConfig);
    expect(await child.line("steps-done")).toBe(id);
    child.process.kill("SIGKILL");
    expect(await child.exited).toMatchObject({ signal: "SIGKILL" });

    // What the dead process left: a running task holding its two persisted steps.
    const left = await registry.inspect(id);
    expect(left.task.status).toBe("running");
    expect(left.lease?.owner).toBe("child-worker");
    expect(left.task.checkpoint?.steps.map((s) => [s.name, s.output])).toEqual([
      ["a", { from: "child" }],
      ["b", 2],
    ]);

    const events = recordEvents(registry, () => id);
    const reclaimed = nextEvent(registry, "reclaimed", (e) => e.id === id, 10_000);
    const done = settled(registry, id, 20_000);
    const calls = { a: 0, b: 0, c: 0 };
    h.work(
      registry,
      "job",
      async (_task, ctx) => {
        const a = await ctx.step("a", () => {
          calls.a++;
          return { from: "parent" };
        });
        const b = await ctx.step("b", () => {
          calls.b++;
          return 3;
        });
        const c = await ctx.step("c", () => {
          calls.c++;
          return "parent";
        });
        return { a, b, c };
      },
      { leaseMs: 300, pollIntervalMs: 100, owner: "parent-worker" },
    );
    expect(await reclaimed).toMatchObject({ previousOwner: "child-worker", status: "pending" });
    expect(await done).toBe("completed");
    expect(calls).toEqual({ a: 0, b: 0, c: 1 });
    const steps = events.flatMap((e) =>
      e.name === "step" && "replayed" in e.event ? [[e.event.name, e.event.replayed]] : [],
    );
    expect(steps).toEqual([
      ["a", true],
      ["b", true],
      ["c", false],
    ]);
    const record = await registry.inspect(id);
    expect(record.runs).toBe(2);
    expect(record.task.checkpoint?.value).toEqual({
      Ok: { a: { from: "child" }, b: 2, c: "parent" },
    });
    expect(h.errors).toEqual([]);
  });
});
