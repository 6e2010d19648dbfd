/**
 * A worker process for W4: `node --import tsx lifecycle-child.ts '<ChildConfig JSON>'`.
 *
 * It opens the queue of one system (cruxx-registry, plainjob or liteque) with that system's
 * own worker API and a no-op handler, prints `ready`, starts working on `go`, and on `stop`
 * stops its worker, prints `stats {json}` and exits. The registry's child also takes `pause`:
 * it stops its worker, keeps the registry open and prints `paused`; the next `go` starts a
 * new worker in the same, now warm, process. The fourth system, `raw`, is the
 * floor: raw better-sqlite3 running the registry's own claim and completion statements on its
 * rows, in the same batches, with none of the registry's code.
 */
import Database from "better-sqlite3";
import { buildDBClient, Runner, SqliteQueue } from "liteque";
import { better, defineQueue, defineWorker } from "plainjob";
import { prepareStatements } from "../../src/backend/sqlite/statements.js";
import { openRaw } from "../raw.js";
import { onStdinLines, silentLogger, sleep } from "../util.js";

export type QueueSystem = "cruxx-registry" | "plainjob" | "liteque" | "raw";

export interface ChildConfig {
  readonly system: QueueSystem;
  readonly path: string;
  readonly kind: string;
  /** How often an idle baseline worker polls (ms). */
  readonly pollMs: number;
  /** Worker concurrency of the registry's children (the baselines' workers run one at a time). */
  readonly registryConcurrency: number;
  /** For `raw`: the registry's rows of a task once claimed and once done. */
}

export interface ChildStats {
  readonly system: QueueSystem;
  readonly errors: number;
  readonly firstError: string | null;
}

interface Running {
  start(): void;
  stop(): Promise<void>;
  /** Stop working but stay open, so a later start() runs in a warm process. */
  pause?(): Promise<void>;
}

const config = JSON.parse(process.argv[2] ?? "{}") as ChildConfig;
let errors = 0;
let firstError: string | null = null;
const noteError = (error: unknown) => {
  errors++;
  firstError ??= error instanceof Error ? error.message : String(error);
};

/**
 * better-sqlite3 ≥ 11.10 refuses a transaction function that returns a promise, which
 * liteque 0.8.0's dequeue does (drizzle `transaction(async …)`; karakeep-app/karakeep#1594), so
 * unpatched liteque fails on its first dequeue here. This restores the older driver behaviour
 * liteque's deployments run with: the transaction commits when the function returns (at its
 * first await) and the promise is handed back to the caller. Only in the liteque child.
 */
function allowPromiseReturningTransactions(): void {
  type Fn = (...args: unknown[]) => unknown;
  type Tx = Fn & Record<string, unknown>;
  const proto = Database.prototype as unknown as { transaction: (fn: Fn) => Tx };
  const original = proto.transaction;
  proto.transaction = function (this: unknown, fn: Fn): Tx {
    let pending: unknown;
    const inner = original.call(this, function (this: unknown, ...args: unknown[]) {
      const result = fn.apply(this, args);
      if (result !== null && typeof (result as { then?: unknown })?.then === "function") {
        pending = result;
        return undefined;
      }
      return result;
    });
    const variant = (tx: Tx) =>
      function (this: unknown, ...args: unknown[]) {
        pending = undefined;
        const result = tx.apply(this, args);
        return pending ?? result;
      };
    const outer = variant(inner) as Tx;
    for (const mode of ["deferred", "immediate", "exclusive"]) {
      outer[mode] = variant(inner[mode] as Tx);
    }
    return outer;
  };
}

async function setUp(): Promise<Running> {
  switch (config.system) {
    case "cruxx-registry": {
      // Imported here so the baselines' children do not load the registry at all.
      const { openRegistry } = await import("../../src/index.js");
      const registry = await openRegistry(config.path, { durability: "normal" });
      let worker: ReturnType<typeof registry.work> | undefined;
      return {
        start: () => {
          // Free slots are claimed in one transaction and no-op runs finishing together
          // complete in one group commit: the registry's way to drain a backlog.
          worker = registry.work(config.kind, () => null, {
            onError: noteError,
            concurrency: config.registryConcurrency,
          });
        },
        stop: async () => {
          await worker?.stop();
          await registry.close();
        },
        pause: async () => {
          await worker?.stop();
          worker = undefined;
        },
      };
    }
    case "plainjob": {
      const queue = defineQueue({
        connection: better(new Database(config.path)),
        logger: silentLogger,
      });
      const worker = defineWorker(config.kind, () => undefined, {
        queue,
        logger: silentLogger,
        pollIntervall: config.pollMs,
        onFailed: (_job, error) => noteError(error),
      });
      let running: Promise<void> | undefined;
      return {
        start: () => {
          running = worker.start().catch(noteError);
        },
        stop: async () => {
          await worker.stop();
          await running;
          queue.close();
        },
      };
    }
    case "raw":
      return rawWorker();
    case "liteque": {
      allowPromiseReturningTransactions();
      const db = buildDBClient(config.path);
      const queue = new SqliteQueue<{ i: number }>(config.kind, db, {
        defaultJobArgs: { numRetries: 2 },
        keepFailedJobs: false,
      });
      const runner = new Runner<{ i: number }>(
        queue,
        {
          run: async () => undefined,
          onError: async (job) => noteError(job.error),
        },
        { concurrency: 1, pollIntervalMs: config.pollMs, timeoutSecs: 60 },
      );
      // A runner that throws (SQLITE_BUSY between processes, say) is started again.
      return repeatUntilStopped(() => runner.run().catch(noteError), {
        interrupt: () => runner.stop(),
      });
    }
  }
}

/**
 * Run `round` again and again from `start()` until `stop()`, which calls `interrupt` (to end
 * a round that waits), then `cleanUp` once the last round is over.
 */
function repeatUntilStopped(
  round: () => Promise<unknown>,
  { interrupt = () => {}, cleanUp = () => {} }: { interrupt?: () => void; cleanUp?: () => void },
): Running {
  let stopping = false;
  let loop: Promise<void> | undefined;
  return {
    start: () => {
      loop = (async () => {
        while (!stopping) await round();
      })().catch(noteError);
    },
    stop: async () => {
      stopping = true;
      interrupt();
      await loop;
      cleanUp();
    },
  };
}

/**
 * Claim up to a batch of the best due tasks in one transaction and complete them in the next,
 * as the registry's worker does, with the registry's statements and row bytes.
 */
function rawWorker(): Running {
  const db = openRaw(config.path, "normal");
  db.pragma("busy_timeout = 10000"); // a floor may block its own event loop while it waits
  // The registry's own prepared statements, run with nothing of the registry around them.
  const sql = prepareStatements(db);
  const claimBatch = db.transaction(() => {
    const now = Date.now();
    return sql.claimUpTo.all({
      kind: config.kind,
      owner: "raw",
      now,
      expiresAt: now + 30_000,
      limit: config.registryConcurrency,
    });
  });
  const completeBatch = db.transaction((rows: { seq: number; id: string; fence: number }[]) => {
    const now = Date.now();
    for (const { seq, id, fence } of rows) {
      sql.completeBySeq.get({ seq, id, fence, value: '{"Ok":null}', now, extra: 256 });
    }
  });
  return repeatUntilStopped(
    async () => {
      const rows = claimBatch.immediate();
      if (rows.length > 0) completeBatch.immediate(rows);
      else await sleep(config.pollMs);
    },
    { cleanUp: () => db.close() },
  );
}

const running = await setUp();
onStdinLines((line) => {
  if (line === "go") running.start();
  if (line === "pause") {
    const paused = running.pause?.() ?? Promise.reject(new Error(`${config.system} cannot pause`));
    void paused.catch(noteError).finally(() => process.stdout.write("paused\n"));
  }
  if (line === "stop") {
    void running
      .stop()
      .catch(noteError)
      .finally(() => {
        const stats: ChildStats = { system: config.system, errors, firstError };
        process.stdout.write(`stats ${JSON.stringify(stats)}\n`, () => process.exit(0));
      });
  }
});
process.stdout.write("ready\n");
