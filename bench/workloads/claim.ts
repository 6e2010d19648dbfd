/**
 * W5: claim latency as the table grows. Each table is filled with raw batched inserts of rows
 * in the registry's exact format (a done task the registry itself made, copied with fresh
 * ids), plus a steady pool of pending tasks submitted through the registry. One measurement
 * is claim + complete of one task; after each, one new task is submitted (not timed) so the
 * pool stays the same size. All tables are built first, then measured in interleaved chunks,
 * so drifting machine load hits every size alike.
 */
import type Database from "better-sqlite3";
import { openRegistry, type TaskRegistry } from "../../src/index.js";
import { openRaw, rawFill, registryTemplates } from "../raw.js";
import {
  type BenchContext,
  mean,
  median,
  percentile,
  type Row,
  row,
  type TempDir,
  tempDir,
  trimmedMean,
} from "../util.js";

const KIND = "bench";
const INPUT = { prompt: "summarize the page", url: "https://example.com/a", n: 1 };
const POOL = 100;

interface Table {
  readonly size: number;
  readonly pool: number;
  readonly dir: TempDir;
  readonly registry: TaskRegistry;
  readonly raw: Database.Database;
  readonly fillMs: number;
  readonly samples: number[];
}

async function build(size: number, pool: number, ctx: BenchContext): Promise<Table> {
  const dir = tempDir("w5");
  const path = dir.file("registry.db");
  const registry = await openRegistry(path, { durability: "normal" });
  const raw = openRaw(path, "normal");
  const { done } = await registryTemplates(KIND, INPUT);
  const start = performance.now();
  rawFill(raw, done, size - pool);
  await registry.submitMany(Array.from({ length: pool }, () => ({ kind: KIND, input: INPUT })));
  raw.pragma("wal_checkpoint(TRUNCATE)");
  const fillMs = performance.now() - start;
  const count = (raw.prepare("select count(*) as n from tasks").get() as { n: number }).n;
  if (count !== size) throw new Error(`filled ${count} rows, wanted ${size}`);
  ctx.log(
    `W5 filled ${size.toLocaleString("en-US")} rows (${pool} pending) in ${fillMs.toFixed(0)} ms`,
  );
  return { size, pool, dir, registry, raw, fillMs, samples: [] };
}

/** `n` claim + complete cycles; records their times (µs) unless `record` is false. */
async function cycles(table: Table, n: number, record = true): Promise<void> {
  for (let i = 0; i < n; i++) {
    const start = performance.now();
    const claimed = await table.registry.claim(KIND, { owner: "bench" });
    if (claimed === null) throw new Error("nothing to claim");
    await table.registry.complete(claimed.task.id, claimed.lease.token, null);
    const elapsed = performance.now() - start;
    if (record) table.samples.push(elapsed * 1000);
    await table.registry.submit(KIND, INPUT);
  }
}

export async function runClaim(ctx: BenchContext): Promise<Row[]> {
  const sizes = ctx.quick ? [1_000, 10_000, 100_000] : [1_000, 100_000, 1_000_000];
  const backlog = ctx.quick ? { size: 10_000, pool: 2_000 } : { size: 100_000, pool: 10_000 };
  const chunks = ctx.quick ? 4 : 10;
  const perChunk = ctx.quick ? 50 : 100;
  const tables: Table[] = [];
  try {
    for (const size of sizes) tables.push(await build(size, POOL, ctx));
    // Not a target: the same with a large backlog of pending tasks, to show what that costs.
    tables.push(await build(backlog.size, backlog.pool, ctx));
    for (const table of tables) await cycles(table, 50, false); // warm-up
    for (let c = 0; c < chunks; c++) {
      const order = c % 2 === 0 ? tables : [...tables].reverse();
      for (const table of order) await cycles(table, perChunk);
    }
  } finally {
    for (const table of tables) {
      await table.registry.close();
      table.raw.close();
      table.dir.remove();
    }
  }
  const figures = tables.map((t) => ({
    size: t.size,
    pool: t.pool,
    fillMs: t.fillMs,
    avg: trimmedMean(t.samples),
    mean: mean(t.samples),
    p50: median(t.samples),
    p99: percentile(t.samples, 99),
    n: t.samples.length,
  }));
  for (const f of figures) {
    ctx.log(
      `W5 ${f.size.toLocaleString("en-US")} rows (${f.pool} pending): trimmed mean ${f.avg.toFixed(0)} µs, mean ${f.mean.toFixed(0)}, p50 ${f.p50.toFixed(0)}, p99 ${f.p99.toFixed(0)} µs`,
    );
  }
  const smallest = figures[0];
  if (smallest === undefined) return [];
  const label = smallest.size.toLocaleString("en-US");
  const last = sizes.length - 1;
  return figures.map((f, i) =>
    row({
      id: "W5",
      workload:
        f.pool === POOL
          ? `claim + complete with ${f.size.toLocaleString("en-US")} rows in the table`
          : `claim + complete with ${f.size.toLocaleString("en-US")} rows, ${f.pool.toLocaleString("en-US")} of them pending`,
      value: f.avg,
      unit: "µs",
      baseline: i === 0 ? null : { value: smallest.avg, name: `same at ${label} rows` },
      target:
        i === last && i > 0
          ? { on: "ratio", op: "<=", bound: 2, text: `≤ 2× at ${label} rows` }
          : null,
      durability: "normal",
      note: `mean of ${f.n} cycles without the slowest and fastest 5% (plain mean ${f.mean.toFixed(0)} µs, p50 ${f.p50.toFixed(0)} µs, p99 ${f.p99.toFixed(0)} µs); ${f.pool} pending kept steady, the rest done; filled in ${f.fillMs.toFixed(0)} ms${f.pool === POOL ? "" : "; informational: a backlog of pending tasks, not part of the W5 target"}`,
    }),
  );
}
