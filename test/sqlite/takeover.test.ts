/**
 * A process that claimed tasks dies (SIGKILL); another one that only calls claim() and
 * complete() — never recover(), never a worker — still gets every one of them back once the
 * leases expire. Waiting here is bounded against hanging, never a speed claim.
 */
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, expect, it } from "vitest";
import { openRegistry } from "../../src/open.js";
import { tempDbPath } from "../support/backends.js";
import { killChildren, startScript } from "../support/child.js";
import { sleep } from "../worker/helpers.js";
import type { ChildConfig } from "./takeover-child.js";

const CHILD = join(dirname(fileURLToPath(import.meta.url)), "takeover-child.ts");

afterEach(killChildren);

it("with claim() and complete() only, every task a killed process held comes back", async () => {
  const path = tempDbPath();
  const registry = await openRegistry(path);
  try {
    const ids = await registry.submitMany(
      Array.from({ length: 29 }, (_, i) => ({ kind: "job", input: i })),
    );
    const config: ChildConfig = { path, kind: "job", limit: 29, leaseMs: 100 };
    const child = startScript(CHILD, config);
    expect(await child.line("claimed")).toBe("29");
    child.process.kill("SIGKILL");
    expect((await child.exited).signal).toBe("SIGKILL");
    expect(await registry.pending("job")).toEqual([]);

    const finished = new Set<string>();
    const giveUpAt = Date.now() + 20_000; // a hang guard: the leases expire after 100 ms
    while (finished.size < ids.length && Date.now() < giveUpAt) {
      const claimed = await registry.claim("job", { owner: "survivor", leaseMs: 60_000 });
      if (claimed === null) {
        await sleep(10);
        continue;
      }
      expect(claimed.runs).toBe(2);
      await registry.complete(claimed.task.id, claimed.lease.token, "done");
      finished.add(claimed.task.id);
    }

    expect([...finished].sort()).toEqual([...ids].sort());
    for (const id of ids) expect((await registry.get(id)).status).toBe("done");
  } finally {
    await registry.close();
  }
});
