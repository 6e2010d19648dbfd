/**
 * W4: the full lifecycle (submit → claim → complete) with a no-op handler, in 1 and in 2 worker
 * processes, for cruxx-registry, plainjob and liteque, each through its own API.
 *
 * For each system: the parent submits N tasks one at a time with the system's own submit call
 * (timed), then K child processes (started and ready beforehand, not timed) drain the queue
 * with the system's own worker. Throughput = N / (submit time + drain time). The drain ends
 * when a read-only connection sees no pending or running task left (polled every 2 ms). That
 * is the cold figure, the one the target is held to: every system's workers are fresh
 * processes. The registry's children then drain a second N (warm: V8 has optimised them).
 * Rounds rotate the systems; each figure is the median of its per-round ratios to the faster
 * baseline of the same round.
 *
 * A fourth system, `raw`, measures the floor under the registry: raw better-sqlite3 inserting
 * the registry's own rows in transactions of as many as the registry keeps in flight, and
 * children claiming and completing them with the registry's statements, in its batches.
 */
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { buildDBClient, SqliteQueue } from "liteque";
import { better, defineQueue } from "plainjob";
import { openRegistry } from "../../src/index.js";
import {
  copyRow,
  createRegistryFile,
  insertSql,
  openRaw,
  registryTemplates,
  type Templates,
} from "../raw.js";
import {
  type BenchContext,
  type Child,
  median,
  type Row,
  ratios,
  row,
  silentLogger,
  sleep,
  startChild,
  stopChild,
  timeAsync,
  withTempDir,
} from "../util.js";
import type { ChildConfig, ChildStats, QueueSystem } from "./lifecycle-child.js";

const CHILD = fileURLToPath(new URL("./lifecycle-child.ts", import.meta.url));
const KIND = "bench";
const SYSTEMS: readonly QueueSystem[] = ["cruxx-registry", "plainjob", "liteque", "raw"];
/** Worker concurrency of the registry's children. */
const REGISTRY_CONCURRENCY = 32;
/** The registry's producer keeps this many submits in flight; the baselines' add() is synchronous. */
const SUBMITS_IN_FLIGHT = 64;
/** Idle poll interval given to the baselines' workers: the registry's change poll is 5 ms. */
const BASELINE_POLL_MS = 5;

interface Measurement {
  readonly system: QueueSystem;
  readonly procs: number;
  readonly submitMs: number;
  readonly drainMs: number;
  readonly throughput: number;
  readonly errors: number;
  readonly firstError: string | null;
}

async function submitAll(
  system: QueueSystem,
  path: string,
  n: number,
  templates: Templates,
): Promise<number> {
  switch (system) {
    case "raw": {
      await createRegistryFile(path, "normal");
      const db = openRaw(path, "normal");
      try {
        const insert = db.prepare(insertSql(templates.pending));
        const batch = db.transaction((count: number) => {
          const now = Date.now();
          for (let i = 0; i < count; i++) insert.run(copyRow(templates.pending, now));
        });
        return await timeAsync(async () => {
          for (let i = 0; i < n; i += SUBMITS_IN_FLIGHT) {
            batch.immediate(Math.min(SUBMITS_IN_FLIGHT, n - i));
          }
        });
      } finally {
        db.close();
      }
    }
    case "cruxx-registry": {
      const registry = await openRegistry(path, { durability: "normal" });
      try {
        // 64 submits in flight at a time share a commit (group commit).
        return await timeAsync(async () => {
          for (let i = 0; i < n; i += SUBMITS_IN_FLIGHT) {
            const batch = Math.min(SUBMITS_IN_FLIGHT, n - i);
            await Promise.all(
              Array.from({ length: batch }, (_, j) => registry.submit(KIND, { i: i + j })),
            );
          }
        });
      } finally {
        await registry.close();
      }
    }
    case "plainjob": {
      const queue = defineQueue({ connection: better(new Database(path)), logger: silentLogger });
      try {
        return await timeAsync(async () => {
          for (let i = 0; i < n; i++) queue.add(KIND, { i });
        });
      } finally {
        queue.close();
      }
    }
    case "liteque": {
      const db = buildDBClient(path, { runMigrations: true });
      const queue = new SqliteQueue<{ i: number }>(KIND, db, {
        defaultJobArgs: { numRetries: 2 },
        keepFailedJobs: false,
      });
      try {
        return await timeAsync(async () => {
          for (let i = 0; i < n; i++) await queue.enqueue({ i });
        });
      } finally {
        // liteque exposes no close(); its drizzle session holds the better-sqlite3 handle.
        (db as unknown as { session?: { client?: Database.Database } }).session?.client?.close();
      }
    }
  }
}

/** Tasks not finished yet, as a separate read connection sees them. */
function remainingQuery(system: QueueSystem, db: Database.Database): () => number {
  const registrySql = `select count(*) as n from tasks where status in ('pending', 'running')`;
  const sql = {
    "cruxx-registry": registrySql,
    raw: registrySql,
    // plainjob: 0 pending, 1 processing.
    plainjob: `select count(*) as n from plainjob_jobs where status in (0, 1)`,
    // liteque deletes a job when it completes.
    liteque: `select count(*) as n from tasks where queue = '${KIND}'`,
  }[system];
  const statement = db.prepare(sql);
  return () => (statement.get() as { n: number }).n;
}

/** Finished tasks, to check that every one was done exactly as the drain claimed. */
function finishedCount(system: QueueSystem, db: Database.Database, n: number): number {
  if (system === "cruxx-registry" || system === "raw") {
    return (
      db.prepare(`select count(*) as n from tasks where status = 'done'`).get() as { n: number }
    ).n;
  }
  if (system === "plainjob") {
    return (
      db.prepare(`select count(*) as n from plainjob_jobs where status = 2`).get() as { n: number }
    ).n;
  }
  const left = (
    db.prepare(`select count(*) as n from tasks where queue = ?`).get(KIND) as { n: number }
  ).n;
  return n - left;
}

/** Send `go` and wait until a read connection sees no unfinished task; ms from `go`. */
async function drain(system: QueueSystem, children: readonly Child[], remaining: () => number) {
  const start = performance.now();
  for (const child of children) child.send("go");
  const deadline = start + 180_000;
  while (remaining() > 0) {
    if (performance.now() > deadline) throw new Error(`${system} did not drain in 180 s`);
    await sleep(2);
  }
  return performance.now() - start;
}

/**
 * One round of a system: submit N, drain them with fresh children (cold). For the registry,
 * its children then pause, the parent submits N more, and the same children, now warm,
 * drain those too.
 */
async function measure(
  system: QueueSystem,
  procs: number,
  n: number,
  templates: Templates,
  ctx: BenchContext,
): Promise<{ cold: Measurement; warm?: Measurement }> {
  return withTempDir(`w4-${system}`, async (dir) => {
    const path = dir.file("queue.db");
    const passes = system === "cruxx-registry" ? 2 : 1;
    const submitMs = [await submitAll(system, path, n, templates)];
    const config: ChildConfig = {
      system,
      path,
      kind: KIND,
      pollMs: BASELINE_POLL_MS,
      registryConcurrency: REGISTRY_CONCURRENCY,
    };
    const children: Child[] = Array.from({ length: procs }, () => startChild(CHILD, config));
    const reader = new Database(path, { readonly: true });
    try {
      await Promise.all(children.map((c) => c.ready));
      const remaining = remainingQuery(system, reader);
      const drainMs = [await drain(system, children, remaining)];
      if (passes === 2) {
        for (const child of children) child.send("pause");
        await Promise.all(children.map((c) => c.waitForLine((l) => l === "paused")));
        submitMs.push(await submitAll(system, path, n, templates));
        drainMs.push(await drain(system, children, remaining));
      }
      const statsLines = children.map((c) => {
        const line = c.waitForLine((l) => l.startsWith("stats "));
        line.catch(() => undefined); // awaited below; not an unhandled rejection meanwhile
        return line;
      });
      await Promise.all(children.map((c) => stopChild(c)));
      const stats = (await Promise.all(statsLines)).map(
        (line) => JSON.parse(line.slice("stats ".length)) as ChildStats,
      );
      const finished = finishedCount(system, reader, passes * n);
      if (finished !== passes * n) {
        throw new Error(`${system}: ${finished} of ${passes * n} tasks finished`);
      }
      // Counted over both passes of the registry's children, and shown with the cold one.
      const errors = stats.reduce((sum, s) => sum + s.errors, 0);
      const firstError = stats.find((s) => s.firstError !== null)?.firstError ?? null;
      const [cold, warm] = drainMs.map((drained, i): Measurement => {
        const submitted = submitMs[i] as number;
        const throughput = (n / (submitted + drained)) * 1000;
        const label = i === 0 ? (passes === 2 ? `${system} cold` : system) : `${system} warm`;
        ctx.log(
          `W4 ${label} ×${procs}: submit ${submitted.toFixed(0)} ms, drain ${drained.toFixed(0)} ms → ${throughput.toFixed(0)} tasks/s${i === 0 && errors > 0 ? ` (${errors} worker errors: ${firstError})` : ""}`,
        );
        return {
          system,
          procs,
          submitMs: submitted,
          drainMs: drained,
          throughput,
          errors: i === 0 ? errors : 0,
          firstError: i === 0 ? firstError : null,
        };
      });
      return { cold: cold as Measurement, ...(warm !== undefined && { warm }) };
    } finally {
      reader.close();
      await Promise.all(children.map((c) => stopChild(c, "stop", 2000)));
    }
  });
}

/** What each round measured: the systems, and the registry once warm. */
type Series = QueueSystem | "cruxx-registry warm";
type Round = Map<Series, Measurement>;

/** The faster baseline of a round, if either ran. */
function fasterBaseline(round: Round): Measurement | undefined {
  const candidates = [round.get("plainjob"), round.get("liteque")].filter(
    (m): m is Measurement => m !== undefined,
  );
  return candidates.sort((a, b) => b.throughput - a.throughput)[0];
}

/** The series' throughput over the same round's faster baseline, for every round that has both. */
function perRoundRatios(rounds: readonly Round[], series: Series): number[] {
  return rounds.flatMap((round) => {
    const ours = round.get(series);
    const best = fasterBaseline(round);
    return ours === undefined || best === undefined ? [] : [ours.throughput / best.throughput];
  });
}

export async function runLifecycle(ctx: BenchContext): Promise<Row[]> {
  const n = ctx.quick ? 500 : 4000;
  // Per-round figures move ±20 % here; the median of 5 rounds is what the target is held to.
  const roundCount = ctx.quick ? 1 : 5;
  const rows: Row[] = [];
  const templates = await registryTemplates(KIND, { i: 0 });
  for (const procs of [1, 2]) {
    const rounds: Round[] = [];
    const failures = new Map<QueueSystem, string[]>(SYSTEMS.map((s) => [s, []]));
    for (let r = 0; r < roundCount; r++) {
      // Rotate the order so no system always runs first (or last) in a round.
      const order = SYSTEMS.map((_, i) => SYSTEMS[(i + r) % SYSTEMS.length] as QueueSystem);
      const round: Round = new Map();
      for (const system of order) {
        try {
          const { cold, warm } = await measure(system, procs, n, templates, ctx);
          round.set(system, cold);
          if (warm !== undefined) round.set("cruxx-registry warm", warm);
        } catch (error) {
          const text = error instanceof Error ? error.message : String(error);
          const lines = text.split("\n").filter((line) => line.trim() !== "");
          failures.get(system)?.push(lines.slice(0, 3).join(" | "));
          ctx.log(`W4 ${system} ×${procs} failed: ${text}`);
        }
      }
      rounds.push(round);
      const best = fasterBaseline(round);
      if (best !== undefined) {
        const ratio = (series: Series) => {
          const m = round.get(series);
          return m === undefined ? "—" : (m.throughput / best.throughput).toFixed(2);
        };
        ctx.log(
          `W4 ×${procs} round ${r + 1}: over ${best.system}, registry cold ${ratio("cruxx-registry")}, warm ${ratio("cruxx-registry warm")}, floor ${ratio("raw")}`,
        );
      }
    }
    const summary = (series: Series) => {
      const ms = rounds.flatMap((round) => round.get(series) ?? []);
      const system = series === "cruxx-registry warm" ? "cruxx-registry" : series;
      const failed = failures.get(system) ?? [];
      if (ms.length === 0) {
        return { throughput: Number.NaN, text: `${series}: every run failed (${failed[0]})` };
      }
      const throughput = median(ms.map((m) => m.throughput));
      const submit = median(ms.map((m) => m.submitMs));
      const drained = median(ms.map((m) => m.drainMs));
      const errors = ms.reduce((sum, m) => sum + m.errors, 0);
      const firstError = ms.find((m) => m.firstError !== null)?.firstError;
      return {
        throughput,
        text: `${series} ${throughput.toFixed(0)}/s (submit ${submit.toFixed(0)} ms + drain ${drained.toFixed(0)} ms${errors > 0 ? `, ${errors} worker errors: ${firstError}` : ""}${failed.length > 0 && series !== "cruxx-registry warm" ? `, ${failed.length} failed runs: ${failed[0]}` : ""})`,
      };
    };
    const bests = rounds.flatMap((round) => fasterBaseline(round) ?? []);
    const faster = (["plainjob", "liteque"] as const)
      .map((system) => ({ system, rounds: bests.filter((m) => m.system === system).length }))
      .filter((b) => b.rounds > 0)
      .map((b) => `${b.system} in ${b.rounds} of ${rounds.length}`)
      .join(", ");
    const baseline =
      bests.length === 0
        ? null
        : {
            value: median(bests.map((m) => m.throughput)),
            name: `the faster of plainjob and liteque in each round (${faster})`,
          };
    const processes = `${procs} worker process${procs > 1 ? "es" : ""}`;
    const measured = `N=${n}, ${roundCount === 1 ? "1 round (quick)" : `${roundCount} rounds, systems rotated each round`}`;
    const figures = (series: Series) => {
      const r = perRoundRatios(rounds, series);
      return { ratio: r.length === 0 ? Number.NaN : median(r), perRound: ratios(r) };
    };
    const cold = figures("cruxx-registry");
    const warm = figures("cruxx-registry warm");
    const floor = figures("raw");
    const baselines = `${summary("plainjob").text}; ${summary("liteque").text}`;
    rows.push(
      row({
        id: "W4",
        workload: `lifecycle submit→claim→complete, ${processes}, no-op handler, cold worker`,
        value: summary("cruxx-registry").throughput,
        unit: "tasks/s",
        baseline,
        ratio: cold.ratio,
        target: { on: "ratio", op: ">=", bound: 2, text: "≥ 2× faster of plainjob/liteque" },
        durability: "normal",
        note: `${measured}; median of the per-round ratios ${cold.perRound}; each worker process fresh, as the baselines'; ${summary("cruxx-registry").text}; ${baselines}; registry: ${SUBMITS_IN_FLIGHT} submits in flight, worker concurrency ${REGISTRY_CONCURRENCY} (baselines: one job at a time, their API's only mode); baselines poll every ${BASELINE_POLL_MS} ms when idle; liteque runs with a driver shim (see README)`,
      }),
      row({
        id: "W4",
        workload: `lifecycle, ${processes}, warm worker (the same processes, after draining the cold run's N)`,
        value: summary("cruxx-registry warm").throughput,
        unit: "tasks/s",
        baseline,
        ratio: warm.ratio,
        durability: "normal",
        note: `${measured}; the registry's worker processes of the cold row, paused after their drain, then N more submitted and drained; median of the per-round ratios ${warm.perRound} over the same rounds' baselines, which are cold; ${summary("cruxx-registry warm").text}`,
      }),
      row({
        id: "W4",
        workload: `floor: raw better-sqlite3 running the registry's statements, ${procs} process${procs > 1 ? "es" : ""}`,
        value: summary("raw").throughput,
        unit: "tasks/s",
        baseline,
        ratio: floor.ratio,
        durability: "normal",
        note: `the registry's own rows, inserted ${SUBMITS_IN_FLIGHT} per transaction, then claimed ${REGISTRY_CONCURRENCY} per transaction and completed ${REGISTRY_CONCURRENCY} per transaction with its own prepared claim and complete statements (one UPDATE … RETURNING a batch, one fenced UPDATE a task), and none of its code: what any code on this schema can reach; ${measured}; per-round ratios ${floor.perRound}; ${summary("raw").text}`,
      }),
    );
  }
  return rows;
}
