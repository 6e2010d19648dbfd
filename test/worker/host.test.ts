/**
 * A worker talks to the registry through its host side, whose operations take the values the
 * worker already checked: none of its calls goes through a public method (which would check
 * its arguments again), and what a handler gives is still checked.
 */
import { afterEach, expect, it, vi } from "vitest";
import { MemoryBackend } from "../../src/backend/memory.js";
import { TaskRegistry } from "../../src/registry.js";
import { Harness, nextEvent, settled } from "./helpers.js";

const h = new Harness();
afterEach(async () => {
  vi.restoreAllMocks();
  await h.cleanup();
});

const PUBLIC_METHODS = [
  "claim",
  "claimMany",
  "complete",
  "fail",
  "heartbeat",
  "release",
  "recordStep",
  "recordSteps",
  "recover",
  "nextWakeAt",
  "now",
] as const;

it("a worker's runs call none of the registry's public methods", async () => {
  const registry = h.track(new TaskRegistry(new MemoryBackend()));
  const spies = PUBLIC_METHODS.map((name) => vi.spyOn(TaskRegistry.prototype, name));
  const gate = h.gate();
  const held = nextEvent(registry, "step", (e) => e.name === "held");
  const worker = h.work(
    registry,
    "job",
    async (task, ctx) => {
      const a = await ctx.step("a", () => 1);
      if (task.input === "fail") throw new Error("no");
      if (task.input === "hold") {
        await ctx.step("held", () => 2);
        await gate.opened; // heartbeats meanwhile; released by stop()
      }
      return a;
    },
    { leaseMs: 300, heartbeatMs: 20, pollIntervalMs: 50 },
  );
  const ok = await registry.submit("job", "ok");
  const failing = await registry.submit("job", "fail", { maxAttempts: 1 });
  const hold = await registry.submit("job", "hold");
  expect(await settled(registry, ok)).toBe("completed");
  expect(await settled(registry, failing)).toBe("failed");
  await held;
  await new Promise((resolve) => setTimeout(resolve, 100)); // a few heartbeats
  await worker.stop({ timeoutMs: 0 });
  expect((await registry.inspect(hold)).task.status).toBe("pending"); // released
  for (const spy of spies) expect(spy).not.toHaveBeenCalled();
  expect(h.errors).toEqual([]);
});

it("what a handler gives is still checked: a result without a JSON form fails the task for good", async () => {
  const registry = h.track(new TaskRegistry(new MemoryBackend()));
  h.work(registry, "job", async () => ({ when: () => 1 }));
  const id = await registry.submit("job", null);
  const failed = nextEvent(registry, "failed", (e) => e.id === id);
  expect((await failed).error).toMatchObject({ kind: "step_failed", step: "" });
  expect((await registry.inspect(id)).runs).toBe(1);
});
