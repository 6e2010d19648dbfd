/**
 * Durations and times past what Node's timers can wait (2^31−1 ms). A duration some timer
 * waits (lease, heartbeat, poll, stop timeout) is refused above it with VALIDATION: Node would
 * fire it after 1 ms, with a TimeoutOverflowWarning. A due time (`delayMs`, `runAt`) is only
 * stored, so a year works exactly, and an idle wait never asks a timer for more.
 */
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MemoryBackend } from "../../src/backend/memory.js";
import { ValidationError } from "../../src/errors.js";
import { openRegistry } from "../../src/open.js";
import { TaskRegistry } from "../../src/registry.js";
import { MAX_TIMER_MS } from "../../src/timers.js";
import { Wakeup } from "../../src/wakeup.js";
import type { WorkOptions } from "../../src/worker/worker.js";
import { Harness, nextEvent, sleep } from "./helpers.js";

const TOO_LONG = MAX_TIMER_MS + 1;
const YEAR_MS = 365 * 24 * 3600 * 1000;

const h = new Harness();
const warnings: Error[] = [];
const onWarning = (warning: Error) => warnings.push(warning);
beforeEach(() => {
  warnings.length = 0;
  process.on("warning", onWarning);
});
afterEach(async () => {
  await h.cleanup();
  process.off("warning", onWarning);
});

/** Warnings are emitted on a later tick: let them arrive before looking. */
async function warningsSoFar(): Promise<string[]> {
  await sleep(20);
  return warnings.map((w) => w.name);
}

async function validationPath(action: () => unknown): Promise<string | undefined> {
  const error = await Promise.resolve()
    .then(action)
    .then(
      () => undefined,
      (e: unknown) => e,
    );
  return error instanceof ValidationError ? error.path : undefined;
}

describe("a duration a timer waits is at most 2^31−1 ms", () => {
  it.each(["leaseMs", "heartbeatMs", "pollIntervalMs", "changePollMs"] as const)(
    "work({ %s }) above it is refused",
    async (option) => {
      const registry = h.track(new TaskRegistry(new MemoryBackend()));
      const options: WorkOptions = { [option]: TOO_LONG };
      expect(await validationPath(() => registry.work("job", async () => null, options))).toBe(
        `$.${option}`,
      );
      expect(await warningsSoFar()).toEqual([]);
    },
  );

  it("a lease above it is refused by claim() and heartbeat() as well", async () => {
    const registry = h.track(new TaskRegistry(new MemoryBackend()));
    await registry.submit("job", null);
    expect(
      await validationPath(() => registry.claim("job", { owner: "o", leaseMs: TOO_LONG })),
    ).toBe("$.leaseMs");
    const claimed = await registry.claim("job", { owner: "o" });
    if (claimed === null) throw new Error("nothing claimed");
    expect(
      await validationPath(() =>
        registry.heartbeat(claimed.task.id, claimed.lease.token, { leaseMs: TOO_LONG }),
      ),
    ).toBe("$.leaseMs");
  });

  it("stop({ timeoutMs }) above it is refused, and the worker keeps working", async () => {
    const registry = h.track(new TaskRegistry(new MemoryBackend()));
    const worker = h.work(registry, "job", async () => "done");
    for (const timeoutMs of [TOO_LONG, -1, 0.5]) {
      expect(await validationPath(() => worker.stop({ timeoutMs }))).toBe("$.timeoutMs");
    }
    const completed = nextEvent(registry, "completed");
    await registry.submit("job", null);
    await completed;
    expect(await warningsSoFar()).toEqual([]);
  });

  it("busyTimeoutMs above it is refused", async () => {
    expect(await validationPath(() => openRegistry(":memory:", { busyTimeoutMs: TOO_LONG }))).toBe(
      "$.busyTimeoutMs",
    );
  });

  it("at the limit a worker runs, heartbeats and stops without a TimeoutOverflowWarning", async () => {
    const registry = h.track(new TaskRegistry(new MemoryBackend()));
    const worker = h.work(registry, "job", async (_task, ctx) => ctx.step("s", () => 1), {
      leaseMs: MAX_TIMER_MS,
      heartbeatMs: MAX_TIMER_MS,
      pollIntervalMs: MAX_TIMER_MS,
      changePollMs: MAX_TIMER_MS,
    });
    const completed = nextEvent(registry, "completed");
    const id = await registry.submit("job", null);
    await completed;
    expect((await registry.get(id)).status).toBe("done");
    await worker.stop({ timeoutMs: MAX_TIMER_MS });
    expect(await warningsSoFar()).toEqual([]);
    expect(h.errors).toEqual([]);
  });
});

describe("a due time is stored exactly, however far away", () => {
  it("a task delayed by a year is due exactly a year later, and idle workers wait for it", async () => {
    let now = 1_750_000_000_000;
    const registry = h.track(new TaskRegistry(new MemoryBackend(), { clock: () => now }));
    h.work(registry, "job", async () => "done", { pollIntervalMs: MAX_TIMER_MS });
    const id = await registry.submit("job", null, { delayMs: YEAR_MS });
    const runAt = new Date(now + 2 * YEAR_MS);
    const later = await registry.submit("job", null, { runAt });
    expect((await registry.inspect(id)).runAt).toBe(now + YEAR_MS);
    expect((await registry.inspect(later)).runAt).toBe(runAt.getTime());

    now += YEAR_MS - 1;
    const first = nextEvent(registry, "completed");
    await registry.submit("job", "wake"); // wakes the idle worker: only this one is due
    const early = await first;
    expect(early.id).not.toBe(id);
    expect((await registry.inspect(id)).task.status).toBe("pending");

    now += 1;
    const due = nextEvent(registry, "completed", (e) => e.id === id);
    await registry.submit("job", "wake");
    await due;
    expect((await registry.inspect(later)).task.status).toBe("pending");
    expect(await warningsSoFar()).toEqual([]);
  });

  it("a due time past the last Date is refused", async () => {
    const registry = h.track(new TaskRegistry(new MemoryBackend()));
    expect(
      await validationPath(() => registry.submit("job", null, { runAt: 8_640_000_000_000_001 })),
    ).toBe("$.options.runAt");
    expect(
      await validationPath(() =>
        registry.submit("job", null, { delayMs: Number.MAX_SAFE_INTEGER }),
      ),
    ).toBe("$.options.delayMs");
  });

  it("an idle wait longer than a timer can hold waits, without a warning, until notified", async () => {
    const wakeup = new Wakeup();
    let woken = false;
    const waiting = wakeup.wait(2 ** 40).then(() => {
      woken = true;
    });
    expect(await warningsSoFar()).toEqual([]);
    expect(woken).toBe(false);
    wakeup.notify();
    await waiting;
    expect(woken).toBe(true);
  });
});
