/**
 * Child process for shutdown.test.ts, started as
 * `node --import tsx shutdown-child.ts '<ShutdownConfig JSON>'`.
 *
 * It writes enough to start the background checkpoint thread, starts three workers (one
 * whose two handlers ignore their signal and never return, one inside a step that honours
 * its signal, one idle and watching the WAL), prints `running` once the three runs are in
 * flight, then closes: the registry (`close: "registry"`) or the backend under it
 * (`close: "backend"`), and prints `closed`. It never calls process.exit: the test checks
 * that nothing it leaves behind keeps the process alive. Worker errors go to stderr, one
 * `worker error <code>` line each.
 */
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import { TaskRegistry } from "../../src/registry.js";
import { scriptConfig } from "../support/child.js";

export interface ShutdownConfig {
  readonly path: string;
  readonly close: "registry" | "backend";
}

/** Commits past the backend's CHECKPOINT_THREAD_AFTER_COMMITS (200). */
const COMMITS = 210;

const config = scriptConfig<ShutdownConfig>("shutdown-child.ts '<ShutdownConfig JSON>'");
const backend = await SqliteBackend.open(config.path);
const registry = new TaskRegistry(backend);

for (let i = 0; i < COMMITS; i++) await registry.submit("filler", { i });
await registry.submit("stuck", 1);
await registry.submit("stuck", 2);
await registry.submit("stepping", null);

let started = 0;
const onStart = () => {
  if (++started === 3) process.stdout.write("running\n");
};
const options = {
  leaseMs: 300, // heartbeats every 100 ms
  onError: (error: unknown) => {
    const code = (error as { code?: unknown }).code;
    process.stderr.write(`worker error ${String(code)}: ${String(error)}\n`);
  },
};
registry.work(
  "stuck",
  async () => {
    onStart();
    await new Promise(() => undefined); // ignores its signal, never returns
  },
  { ...options, concurrency: 2 },
);
registry.work(
  "stepping",
  async (_task, ctx) => {
    await ctx.step("long", (signal) => {
      onStart();
      return new Promise<never>((_resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("not aborted")), 3_600_000);
        signal.addEventListener("abort", () => {
          clearTimeout(timer);
          reject(signal.reason);
        });
      });
    });
  },
  options,
);
registry.work("idle", async () => null, options);

await new Promise<void>((resolve) => {
  const check = setInterval(() => {
    if (started < 3) return;
    clearInterval(check);
    resolve();
  }, 5);
});
if (config.close === "registry") await registry.close({ timeoutMs: 200 });
else await backend.close();
process.stdout.write("closed\n");
