/**
 * close() stops the registry's workers before it closes the backend, and a process whose
 * registry (or backend) was closed exits by itself: no heartbeat, idle wait, WAL watch or
 * checkpoint thread is left. The bounds here are safety nets against hanging, not timings.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { hasErrorCode } from "../../src/errors.js";
import { openRegistry } from "../../src/open.js";
import { TaskRegistry } from "../../src/registry.js";
import { BACKENDS, tempDbPath } from "../support/backends.js";
import { type Exit, killChildren, startScript } from "../support/child.js";
import { Harness, nextEvent, sleep } from "./helpers.js";
import type { ShutdownConfig } from "./shutdown-child.js";

const CHILD = join(dirname(fileURLToPath(import.meta.url)), "shutdown-child.ts");
/** Far longer than a clean exit takes; past it the child is killed and the test fails. */
const EXIT_BOUND_MS = 30_000;

const h = new Harness();
afterEach(async () => {
  killChildren();
  await h.cleanup();
});

/**
 * Run the child until it has closed, and return how it exited: it must exit cleanly by
 * itself within EXIT_BOUND_MS.
 */
async function closeInChild(config: ShutdownConfig): Promise<Exit> {
  const child = startScript(CHILD, config);
  await child.line("running", 60_000);
  await child.line("closed", EXIT_BOUND_MS);
  const exit = await Promise.race([child.exited, sleep(EXIT_BOUND_MS).then(() => undefined)]);
  if (exit === undefined) throw new Error("the child was still running: something kept it alive");
  expect(exit).toMatchObject({ code: 0, signal: null });
  return exit;
}

describe("a process whose registry was closed exits by itself", () => {
  it("close() stops the workers, releases their in-flight runs, then closes", {
    timeout: 120_000,
  }, async () => {
    const path = tempDbPath();
    expect((await closeInChild({ path, close: "registry" })).stderr).toBe("");

    // The three runs were released as stop() does: pending again, no lease, one run used.
    const registry = h.track(await openRegistry(path));
    const inFlight = [
      ...(await registry.pending("stuck")),
      ...(await registry.pending("stepping")),
    ];
    expect(inFlight).toHaveLength(3);
    for (const task of inFlight) {
      expect(await registry.inspect(task.id)).toMatchObject({ lease: null, runs: 1 });
    }
  });

  it("a backend closed under its workers stops them, each reporting CLOSED once", {
    timeout: 120_000,
  }, async () => {
    const { stderr } = await closeInChild({ path: tempDbPath(), close: "backend" });
    const reports = stderr.split("\n").filter((line) => line !== "");
    expect(reports).toHaveLength(3); // one per worker
    for (const report of reports) expect(report).toMatch(/^worker error CLOSED: /);
  });
});

describe.each(BACKENDS)("close() on $name", (factory) => {
  it("lets an in-flight handler finish within the timeout before the backend closes", async () => {
    const registry = h.track(new TaskRegistry(await factory.open()));
    const release = h.gate();
    const worker = h.work(registry, "job", async () => {
      await release.opened;
      return "finished";
    });
    const completed = nextEvent(registry, "completed");
    const claimed = nextEvent(registry, "claimed");
    await registry.submit("job", null);
    await claimed;
    const closed = registry.close({ timeoutMs: 60_000 });
    expect(() => registry.work("job", async () => null)).toThrow(
      expect.objectContaining({ code: "CLOSED" }),
    );
    release.open();
    await closed;
    await completed; // completed before the backend closed: the write went through
    expect(worker.inFlight).toBe(0);
    await worker.stop(); // already stopped
    await expect(registry.submit("job", null)).rejects.toMatchObject({ code: "CLOSED" });
    expect(h.errors).toEqual([]);
  });

  it("refuses a bad timeout and stays open", async () => {
    const registry = h.track(new TaskRegistry(await factory.open()));
    h.work(registry, "job", async () => null);
    for (const timeoutMs of [-1, 1.5, 2 ** 31, Number.NaN]) {
      const error = await registry.close({ timeoutMs }).catch((e: unknown) => e);
      expect(hasErrorCode(error, "VALIDATION")).toBe(true);
    }
    await registry.submit("job", null); // still open
  });
});
