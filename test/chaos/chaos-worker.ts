/**
 * Child process for chaos.test.ts: one worker process on a shared registry file, killed with
 * SIGKILL at random moments by the parent. Started as
 * `node --import tsx chaos-worker.ts '<ChaosWorkerConfig JSON>'`.
 *
 * It runs the `chaos` tasks' durable steps and appends one line per event to its own log file
 * (see chaos-log.ts for the format). Each line is one `write(2)` on an O_APPEND descriptor,
 * done synchronously, so a line is either in the file or not, and it is there before the
 * process goes on.
 *
 * The parent starts it as a spare, ahead of need: it loads its modules, prints `loaded` and
 * waits for a `go` line on stdin (or exits 0 if stdin ends first), so a replacement for a killed worker takes
 * over at once instead of after Node and tsx start up. After `go` it opens the registry, starts
 * its worker and prints `ready`. On SIGTERM it stops the worker, closes the registry and
 * exits 0.
 *
 * Anything unexpected (an uncaught error, a worker loop error, a handler run that failed
 * instead of finishing or losing its lease) is written to stderr; the parent fails on any
 * stderr output.
 */
import { closeSync, openSync, writeSync } from "node:fs";
import { createInterface } from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { openRegistry } from "../../src/open.js";
import type { Task } from "../../src/wire/schema.js";
import type { WorkContext } from "../../src/worker/context.js";
import {
  CHAOS_KIND,
  type ChaosInput,
  type ChaosResult,
  type StepOutput,
  stepValue,
} from "./chaos-log.js";

export interface ChaosWorkerConfig {
  readonly path: string;
  /** This process's own log file. */
  readonly logPath: string;
  /** Unique per process incarnation; the lease owner is `chaos-<incarnation>-<pid>`. */
  readonly incarnation: number;
  readonly concurrency: number;
  readonly leaseMs: number;
  readonly pollIntervalMs: number;
}

function report(what: string, error: unknown): void {
  const text = error instanceof Error ? (error.stack ?? error.message) : String(error);
  const cause =
    error instanceof Error && error.cause !== undefined
      ? `\ncaused by: ${String(error.cause)}`
      : "";
  process.stderr.write(`chaos-worker ${process.pid}: ${what}: ${text}${cause}\n`);
}

process.on("uncaughtException", (error) => {
  report("uncaught exception", error);
  process.exit(1);
});
process.on("unhandledRejection", (error) => {
  report("unhandled rejection", error);
  process.exit(1);
});

async function main(config: ChaosWorkerConfig): Promise<void> {
  const pid = process.pid;
  const fd = openSync(config.logPath, "a");
  const log = (line: string) => {
    writeSync(fd, `${line}\n`);
  };

  const registry = await openRegistry(config.path, { durability: "full" });
  registry.on("completed", ({ id }) => log(`completed ${id} ${pid}`));
  registry.on("reclaimed", ({ id, previousOwner }) =>
    log(`reclaimed ${id} ${pid} ${Date.now()} ${previousOwner}`),
  );
  // With maxAttempts far above the number of kills, no run should ever end in fail(): a
  // handler that loses its lease returns quietly, so a `retried` with an error or a `failed`
  // means a run failed where it should have finished.
  registry.on("retried", ({ id, error }) => {
    if (error !== null) report(`task ${id} failed a run`, JSON.stringify(error));
  });
  registry.on("failed", ({ id, error }) => report(`task ${id} failed`, JSON.stringify(error)));

  const handler = async (_task: Task, ctx: WorkContext): Promise<ChaosResult> => {
    const { index, steps } = ctx.input as unknown as ChaosInput;
    const id = ctx.claimed.task.id;
    const run = ctx.claimed.runs;
    let total = 0;
    for (let ordinal = 0; ordinal < steps; ordinal++) {
      let live = false;
      const output = await ctx.step(`s${ordinal}`, async (): Promise<StepOutput> => {
        live = true;
        log(`exec ${id} ${ordinal} ${pid} ${run}`);
        await sleep(Math.floor(Math.random() * 16));
        return { v: stepValue(index, ordinal), pid, run };
      });
      // ctx.step resolves both for a step it ran and stored and for one it replayed.
      if (live) log(`persisted ${id} ${ordinal} ${pid} ${run}`);
      else log(`replayed ${id} ${ordinal} ${pid} ${run} ${output.run}`);
      total += output.v;
    }
    return { index, steps, total };
  };
  const worker = registry.work(CHAOS_KIND, handler, {
    concurrency: config.concurrency,
    leaseMs: config.leaseMs,
    pollIntervalMs: config.pollIntervalMs,
    owner: `chaos-${config.incarnation}-${pid}`,
    onError: (error) => report("worker loop error", error),
  });

  process.once("SIGTERM", () => {
    void (async () => {
      await worker.stop({ timeoutMs: 5000 });
      await registry.close();
      closeSync(fd);
      process.exit(0);
    })().catch((error) => {
      report("shutdown failed", error);
      process.exit(1);
    });
  });
  process.stdout.write("ready\n");
}

/**
 * Resolves on a `go` line. A spare that is never needed sees stdin end instead, and exits 0.
 */
function waitForGo(): Promise<void> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: process.stdin });
    let going = false;
    lines.on("line", (line) => {
      if (line.trim() === "go" && !going) {
        going = true;
        resolve(); // before close(), whose "close" event would otherwise exit
        lines.close();
      }
    });
    lines.on("close", () => {
      if (!going) process.exit(0);
    });
  });
}

const configText = process.argv[2];
if (configText === undefined) {
  process.stderr.write("usage: chaos-worker.ts '<ChaosWorkerConfig JSON>'\n");
  process.exit(2);
}
// Every module is loaded by now: a spare starts working at once when it is told to.
process.stdout.write("loaded\n");
await waitForGo();
await main(JSON.parse(configText) as ChaosWorkerConfig);
