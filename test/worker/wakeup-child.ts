/**
 * Child process for wakeup.test.ts, started as
 * `node --import tsx wakeup-child.ts '<ChildConfig JSON>'`, with its own SQLite connection.
 *
 * - `submit`: submits one task of `kind`, prints `submitted <id>`, exits 0.
 * - `work`: runs a worker for `kind` whose handler stores steps `a` and `b`, prints
 *   `steps-done <id>` and then hangs (heartbeating) until the parent kills the process.
 */
import { openRegistry } from "../../src/open.js";

export interface ChildConfig {
  readonly path: string;
  readonly mode: "submit" | "work";
  readonly kind: string;
  readonly owner?: string;
  readonly leaseMs?: number;
}

const configText = process.argv[2];
if (configText === undefined) {
  process.stderr.write("usage: wakeup-child.ts '<ChildConfig JSON>'\n");
  process.exit(2);
}
const config = JSON.parse(configText) as ChildConfig;
const registry = await openRegistry(config.path);

if (config.mode === "submit") {
  const id = await registry.submit(config.kind, { from: "child" });
  process.stdout.write(`submitted ${id}\n`);
  await registry.close();
  process.exit(0);
}

registry.work(
  config.kind,
  async (task, ctx) => {
    await ctx.step("a", () => ({ from: "child" }));
    await ctx.step("b", () => 2);
    process.stdout.write(`steps-done ${task.id}\n`);
    await new Promise(() => undefined); // the heartbeat timer keeps the process alive
  },
  {
    leaseMs: config.leaseMs ?? 300,
    pollIntervalMs: 100,
    owner: config.owner ?? "child-worker",
    onError: (error) => process.stderr.write(`worker error: ${String(error)}\n`),
  },
);
process.stdout.write("ready\n");
