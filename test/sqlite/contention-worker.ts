/**
 * Child process for contention.test.ts: one of several processes hammering the same SQLite
 * registry file. Started as `node --import tsx contention-worker.ts '<WorkerConfig JSON>'`.
 *
 * It prints `ready` once it is set up, waits for a `go` line on stdin (so every child starts
 * its writes at the same moment), runs its operations, writes a WorkerReport as JSON to
 * `reportPath` and exits 0. Every error an operation throws is recorded (name, code,
 * message), never rethrown: the parent decides which errors are acceptable.
 */
import { writeFileSync } from "node:fs";
import { createInterface } from "node:readline";
import type { Durability } from "../../src/backend/sqlite/index.js";
import { newCruxId } from "../../src/ids.js";
import { openRegistry } from "../../src/open.js";
import type { TaskRegistry } from "../../src/registry.js";
import { TASK_STATUSES, type TaskStatus } from "../../src/wire/schema.js";
import { makeCrux } from "../support/crux.js";
import { prng } from "../support/prng.js";

export interface WorkerConfig {
  readonly path: string;
  /** This child's number, used in agent names and the PRNG seed. */
  readonly child: number;
  /** `undefined`: open with the default durability (`full`). */
  readonly durability?: Durability;
  /** `random`: random checkpoint/updateStatus calls on `taskIds`. `submit`: submit then checkpoint own tasks. */
  readonly mode: "random" | "submit";
  readonly taskIds: readonly string[];
  /** Operations per lane (`random`) or tasks to submit (`submit`). */
  readonly iterations: number;
  /** Concurrent operation loops inside this process, all on its one connection. */
  readonly lanes: number;
  readonly seed: number;
  /** Wait for `go` before opening the registry (to race the open and migration) instead of after. */
  readonly barrierBeforeOpen: boolean;
  readonly reportPath: string;
}

export interface SeenError {
  readonly op: "checkpoint" | "updateStatus" | "submit" | "open" | "close";
  readonly taskId: string | null;
  readonly name: string;
  readonly code: unknown;
  readonly message: string;
  /** The driver error behind it, if any (e.g. SQLITE_BUSY_RECOVERY), with the stack that hit it. */
  readonly cause?: { readonly code: unknown; readonly message: string; readonly stack: string };
}

/** What one lane achieved on one task. Calls within a lane are sequential. */
export interface LaneTaskStats {
  checkpointsResolved: number;
  statusesResolved: number;
  /** Status set by this lane's last resolved updateStatus on the task, if any. */
  lastStatus: TaskStatus | null;
  /** Agent of this lane's last resolved checkpoint on the task, if any. */
  lastAgent: string | null;
}

export interface WorkerReport {
  readonly child: number;
  readonly durability: string;
  readonly seed: number;
  /** lanes[lane][taskId] */
  readonly lanes: Record<string, LaneTaskStats>[];
  readonly operations: number;
  readonly errors: SeenError[];
  /** Tasks this child submitted (`submit` mode). */
  readonly submitted: string[];
  readonly elapsedMs: number;
}

function describeError(op: SeenError["op"], taskId: string | null, error: unknown): SeenError {
  if (error instanceof Error) {
    return {
      op,
      taskId,
      name: error.name,
      code: (error as { code?: unknown }).code ?? null,
      message: error.message,
      ...(error.cause instanceof Error
        ? {
            cause: {
              code: (error.cause as { code?: unknown }).code ?? null,
              message: error.cause.message,
              stack: error.cause.stack ?? "",
            },
          }
        : {}),
    };
  }
  return { op, taskId, name: typeof error, code: null, message: String(error) };
}

function waitForGo(): Promise<void> {
  return new Promise((resolve, reject) => {
    const lines = createInterface({ input: process.stdin });
    lines.on("line", (line) => {
      if (line.trim() === "go") {
        resolve(); // before close(), whose "close" event would otherwise reject first
        lines.close();
      }
    });
    lines.on("close", () => reject(new Error("stdin closed before `go`")));
  });
}

async function runLane(
  reg: TaskRegistry,
  config: WorkerConfig,
  lane: number,
  stats: Record<string, LaneTaskStats>,
  errors: SeenError[],
): Promise<number> {
  const random = prng(config.seed * 31 + lane);
  let operations = 0;
  for (let i = 0; i < config.iterations; i++) {
    const taskId = config.taskIds[Math.floor(random() * config.taskIds.length)] as string;
    const entry = stats[taskId] as LaneTaskStats;
    operations++;
    if (random() < 0.5) {
      const agent = `child${config.child}-lane${lane}-iter${i}`;
      const crux = { ...makeCrux(), id: newCruxId(), agent };
      try {
        await reg.checkpoint(taskId, crux);
        entry.checkpointsResolved++;
        entry.lastAgent = agent;
      } catch (error) {
        errors.push(describeError("checkpoint", taskId, error));
      }
    } else {
      const status = TASK_STATUSES[Math.floor(random() * TASK_STATUSES.length)] as TaskStatus;
      try {
        await reg.updateStatus(taskId, status);
        entry.statusesResolved++;
        entry.lastStatus = status;
      } catch (error) {
        errors.push(describeError("updateStatus", taskId, error));
      }
    }
  }
  return operations;
}

async function main(config: WorkerConfig): Promise<void> {
  const started = Date.now();
  const errors: SeenError[] = [];
  const submitted: string[] = [];
  const lanes: Record<string, LaneTaskStats>[] = [];
  let operations = 0;

  if (config.barrierBeforeOpen) {
    process.stdout.write("ready\n");
    await waitForGo();
  }
  let reg: TaskRegistry;
  try {
    reg = await openRegistry(
      config.path,
      config.durability === undefined ? {} : { durability: config.durability },
    );
  } catch (error) {
    errors.push(describeError("open", null, error));
    finish();
    return;
  }
  if (!config.barrierBeforeOpen) {
    process.stdout.write("ready\n");
    await waitForGo();
  }

  if (config.mode === "random") {
    for (let lane = 0; lane < config.lanes; lane++) {
      const stats: Record<string, LaneTaskStats> = {};
      for (const id of config.taskIds) {
        stats[id] = {
          checkpointsResolved: 0,
          statusesResolved: 0,
          lastStatus: null,
          lastAgent: null,
        };
      }
      lanes.push(stats);
    }
    const counts = await Promise.all(
      lanes.map((stats, lane) => runLane(reg, config, lane, stats, errors)),
    );
    operations = counts.reduce((a, b) => a + b, 0);
  } else {
    for (let i = 0; i < config.iterations; i++) {
      operations++;
      let id: string;
      try {
        id = await reg.submit(`child${config.child}`, { child: config.child, i });
        submitted.push(id);
      } catch (error) {
        errors.push(describeError("submit", null, error));
        continue;
      }
      operations++;
      try {
        await reg.checkpoint(id, { ...makeCrux(), agent: `child${config.child}-task${i}` });
      } catch (error) {
        errors.push(describeError("checkpoint", id, error));
      }
    }
  }

  try {
    await reg.close();
  } catch (error) {
    errors.push(describeError("close", null, error));
  }
  finish();

  function finish(): void {
    const report: WorkerReport = {
      child: config.child,
      durability: config.durability ?? "default (full)",
      seed: config.seed,
      lanes,
      operations,
      errors,
      submitted,
      elapsedMs: Date.now() - started,
    };
    writeFileSync(config.reportPath, JSON.stringify(report));
  }
}

const configText = process.argv[2];
if (configText === undefined) {
  process.stderr.write("usage: contention-worker.ts '<WorkerConfig JSON>'\n");
  process.exit(2);
}
await main(JSON.parse(configText) as WorkerConfig);
process.exit(0);
