/**
 * A worker's lease renewals share one timer: each run still renews every period from its own
 * start, and a run's end stops its renewals (and, for the last one, the timer).
 */
import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { MemoryBackend } from "../../src/backend/memory.js";
import { TaskRegistry } from "../../src/registry.js";
import { Heartbeats } from "../../src/worker/heartbeats.js";
import { Harness, sleep } from "./helpers.js";

const h = new Harness();
afterEach(async () => {
  vi.restoreAllMocks();
  await h.cleanup();
});

/** Heartbeats of period 100 recording `[run, ms since the test began]` for each renewal. */
function recording(): { beats: [string, number][]; heartbeats: Heartbeats<string> } {
  const start = performance.now();
  const beats: [string, number][] = [];
  const heartbeats = new Heartbeats<string>(100, (run) => {
    beats.push([run, Math.round(performance.now() - start)]);
  });
  return { beats, heartbeats };
}

describe("Heartbeats", () => {
  beforeEach(() => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("renews each run every period from its start, on one timer", async () => {
    const { beats, heartbeats } = recording();
    heartbeats.start("a");
    await vi.advanceTimersByTimeAsync(30);
    heartbeats.start("b");
    for (const run of ["c", "d", "e"]) heartbeats.start(run);
    expect(vi.getTimerCount()).toBe(1);
    await vi.advanceTimersByTimeAsync(300);
    const of = (run: string) => beats.filter(([r]) => r === run).map(([, at]) => at);
    expect(of("a")).toEqual([100, 200, 300]);
    expect(of("b")).toEqual([130, 230, 330]);
    expect(of("e")).toEqual([130, 230, 330]);
    expect(vi.getTimerCount()).toBe(1);
  });

  it("stops a run's renewals when it ends, and the timer with the last one", async () => {
    const { beats, heartbeats } = recording();
    heartbeats.start("a");
    heartbeats.start("b");
    await vi.advanceTimersByTimeAsync(150);
    heartbeats.stop("a");
    await vi.advanceTimersByTimeAsync(100);
    expect(beats).toEqual([
      ["a", 100],
      ["b", 100],
      ["b", 200],
    ]);
    heartbeats.stop("b");
    expect(vi.getTimerCount()).toBe(0);
    heartbeats.stop("b"); // again: nothing to do
    await vi.advanceTimersByTimeAsync(1000);
    expect(beats).toHaveLength(3);
  });

  it("a run started after the others stopped gets a timer again", async () => {
    const { beats, heartbeats } = recording();
    heartbeats.start("a");
    heartbeats.stop("a");
    expect(vi.getTimerCount()).toBe(0);
    await vi.advanceTimersByTimeAsync(50);
    heartbeats.start("b");
    await vi.advanceTimersByTimeAsync(100);
    expect(beats).toEqual([["b", 150]]);
  });

  it("a renewal that stops its own run (a lost lease) ends its renewals", async () => {
    const heartbeats: Heartbeats<string> = new Heartbeats<string>(100, (run) => {
      calls.push(run);
      if (run === "lost") heartbeats.stop(run);
    });
    const calls: string[] = [];
    heartbeats.start("lost");
    heartbeats.start("kept");
    await vi.advanceTimersByTimeAsync(250);
    expect(calls).toEqual(["lost", "kept", "kept"]);
  });
});

describe("a worker's runs", () => {
  it("renew their leases on the worker's timer, not one interval each", async () => {
    const registry = h.track(new TaskRegistry(new MemoryBackend()));
    const ids = await registry.submitMany([0, 1, 2, 3].map((i) => ({ kind: "job", input: i })));
    const gate = h.gate();
    const setIntervalSpy = vi.spyOn(globalThis, "setInterval");
    const worker = h.work(
      registry,
      "job",
      async () => {
        await gate.opened;
        return "ok";
      },
      { concurrency: 4, leaseMs: 3000, heartbeatMs: 50 },
    );
    const expiries = async () =>
      Promise.all(ids.map(async (id) => (await registry.inspect(id)).lease?.expiresAt ?? 0));
    // Wait (bounded) until every lease was extended twice.
    let first = await expiries();
    for (let waited = 0; first.includes(0) && waited < 10_000; waited += 10) {
      await sleep(10);
      first = await expiries();
    }
    const renewals = ids.map(() => 0);
    let last = first;
    for (let waited = 0; renewals.some((n) => n < 2) && waited < 10_000; waited += 20) {
      await sleep(20);
      const now = await expiries();
      now.forEach((at, i) => {
        if (at > (last[i] as number)) renewals[i] = (renewals[i] as number) + 1;
      });
      last = now;
    }
    expect(renewals.every((n) => n >= 2)).toBe(true);
    expect(setIntervalSpy).not.toHaveBeenCalled();
    gate.open();
    await worker.stop();
    for (const id of ids) expect((await registry.get(id)).status).toBe("done");
    expect(h.errors).toEqual([]);
  });
});
