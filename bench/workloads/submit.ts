/**
 * W1–W3: writing new tasks. Each is measured against raw better-sqlite3 inserting the same row
 * (the registry's own template, same table and indexes, same pragmas) in the same run; rounds
 * alternate between the two so machine noise hits both alike. W3's rounds are long enough
 * for other processes to take much of them: its times exclude the wait for a CPU.
 */
import { openRegistry, type SubmitRequest, type TaskRegistry } from "../../src/index.js";
import {
  createRegistryFile,
  openRaw,
  rawBatchInsert,
  rawSingleInserts,
  registryTemplates,
} from "../raw.js";
import {
  type BenchContext,
  median,
  type OwnTime,
  type Row,
  ratios,
  row,
  runQueueKnown,
  timeAsync,
  timeOwn,
  withTempDir,
} from "../util.js";

const KIND = "bench";
const INPUT = { prompt: "summarize the page", url: "https://example.com/a", n: 1 };

export async function runSubmit(ctx: BenchContext): Promise<Row[]> {
  const rows: Row[] = [];
  for (const [id, run] of [
    ["W1", w1],
    ["W2", w2],
    ["W3", w3],
  ] as const) {
    if (ctx.wants(id)) rows.push(await run(ctx));
  }
  return rows;
}

interface Paired {
  /** Per-round elapsed ms of each side. */
  readonly a: number[];
  readonly b: number[];
}

/** Alternate `a` and `b` for `rounds` rounds (swapping who goes first); elapsed ms per round. */
async function alternate(
  rounds: number,
  a: () => Promise<number>,
  b: () => Promise<number>,
): Promise<Paired> {
  const out = { a: [] as number[], b: [] as number[] };
  for (let r = 0; r < rounds; r++) {
    if (r % 2 === 0) {
      out.a.push(await a());
      out.b.push(await b());
    } else {
      out.b.push(await b());
      out.a.push(await a());
    }
  }
  return out;
}

/** Operations per second over all rounds together. */
const rate = (opsPerRound: number, elapsed: readonly number[]) =>
  (opsPerRound * elapsed.length * 1000) / elapsed.reduce((x, y) => x + y, 0);

/** Per-round rates, for the note. */
const rates = (opsPerRound: number, elapsed: readonly number[]) =>
  elapsed.map((ms) => Math.round((opsPerRound * 1000) / ms)).join("/");

async function submitSequential(registry: TaskRegistry, n: number): Promise<number> {
  return timeAsync(async () => {
    for (let i = 0; i < n; i++) await registry.submit(KIND, INPUT);
  });
}

async function w1(ctx: BenchContext): Promise<Row> {
  const rounds = ctx.quick ? 4 : 20;
  const perRound = ctx.quick ? 250 : 1000;
  return withTempDir("w1", async (dir) => {
    const registry = await openRegistry(dir.file("registry.db"), { durability: "normal" });
    await createRegistryFile(dir.file("raw.db"), "normal");
    const raw = openRaw(dir.file("raw.db"), "normal");
    try {
      const { pending } = await registryTemplates(KIND, INPUT);
      // Warm up both paths (JIT, page cache) before anything is timed.
      await submitSequential(registry, 500);
      rawSingleInserts(raw, pending, 500);
      const { a: reg, b: base } = await alternate(
        rounds,
        () => submitSequential(registry, perRound),
        async () => rawSingleInserts(raw, pending, perRound),
      );
      ctx.log(`W1 registry ${rates(perRound, reg)} /s; raw ${rates(perRound, base)} /s`);
      return row({
        id: "W1",
        workload: "single submit, awaited one at a time",
        value: rate(perRound, reg),
        unit: "ops/s",
        baseline: {
          value: rate(perRound, base),
          name: "raw better-sqlite3 autocommit insert, prepared",
        },
        target: { on: "ratio", op: ">=", bound: 0.6, text: "≥ 0.6× raw" },
        durability: "normal",
        note: `${rounds} alternating rounds of ${perRound} each; per round: registry ${rates(perRound, reg)}, raw ${rates(perRound, base)} ops/s`,
      });
    } finally {
      await registry.close();
      raw.close();
    }
  });
}

async function w2(ctx: BenchContext): Promise<Row> {
  const inFlight = 64;
  const rounds = ctx.quick ? 2 : 16;
  return withTempDir("w2", async (dir) => {
    const registry = await openRegistry(dir.file("registry.db"), { durability: "full" });
    await createRegistryFile(dir.file("raw.db"), "full");
    const raw = openRaw(dir.file("raw.db"), "full");
    try {
      const { pending } = await registryTemplates(KIND, INPUT);
      const concurrent = () =>
        timeAsync(() =>
          Promise.all(Array.from({ length: inFlight }, () => registry.submit(KIND, INPUT))),
        );
      await concurrent();
      rawSingleInserts(raw, pending, inFlight);
      // fsync times drift a lot on a shared disk: interleave one batch of each at a time.
      const { a: reg, b: base } = await alternate(rounds, concurrent, async () =>
        rawSingleInserts(raw, pending, inFlight),
      );
      ctx.log(`W2 registry ${rates(inFlight, reg)} /s; raw ${rates(inFlight, base)} /s`);
      return row({
        id: "W2",
        workload: "64 concurrent submits in flight (Promise.all, repeated)",
        value: rate(inFlight, reg),
        unit: "ops/s",
        baseline: { value: rate(inFlight, base), name: "raw better-sqlite3 single-row commits" },
        target: { on: "ratio", op: ">=", bound: 4, text: "≥ 4× raw" },
        durability: "full",
        note: `${rounds} alternating rounds: ${inFlight} concurrent submits vs ${inFlight} sequential raw commits; per round: registry ${rates(inFlight, reg)}, raw ${rates(inFlight, base)} ops/s`,
      });
    } finally {
      await registry.close();
      raw.close();
    }
  });
}

async function w3(ctx: BenchContext): Promise<Row> {
  const n = ctx.quick ? 10_000 : 100_000;
  const rounds = ctx.quick ? 3 : 5;
  return withTempDir("w3", async (dir) => {
    const registry = await openRegistry(dir.file("registry.db"), { durability: "normal" });
    await createRegistryFile(dir.file("raw.db"), "normal");
    const raw = openRaw(dir.file("raw.db"), "normal");
    try {
      const { pending } = await registryTemplates(KIND, INPUT);
      const requests: SubmitRequest[] = Array.from({ length: n }, () => ({
        kind: KIND,
        input: INPUT,
      }));
      const ours = () => timeOwn(() => registry.submitMany(requests));
      const theirs = () => timeOwn(() => rawBatchInsert(raw, pending, n));
      // A whole round each first, not timed: the first round of either side grows its WAL
      // file to the batch's size (later rounds reuse it) and runs colder code, ~1.5–2× slower.
      await ours();
      await theirs();
      const reg: OwnTime[] = [];
      const base: OwnTime[] = [];
      for (let r = 0; r < rounds; r++) {
        // Alternate who goes first, so drift and the other's leftovers (its garbage, its
        // pages in the OS cache) fall on both alike.
        if (r % 2 === 0) reg.push(await ours());
        base.push(await theirs());
        if (r % 2 === 1) reg.push(await ours());
      }
      const perRound = reg.map((t, r) => (base[r] as OwnTime).ownMs / t.ownMs);
      const wallPerRound = reg.map((t, r) => (base[r] as OwnTime).wallMs / t.wallMs);
      const waited = (ts: readonly OwnTime[]) =>
        `${((100 * ts.reduce((s, t) => s + t.waitMs, 0)) / ts.reduce((s, t) => s + t.wallMs, 0)).toFixed(0)} %`;
      const tasksPerSecond = (ts: readonly OwnTime[]) =>
        median(ts.map((t) => (n * 1000) / t.ownMs));
      ctx.log(
        `W3 per round: registry ${reg.map((t) => Math.round((n * 1000) / t.ownMs)).join("/")} /s, raw ${base.map((t) => Math.round((n * 1000) / t.ownMs)).join("/")} /s; ratio ${ratios(perRound)} (wall ${ratios(wallPerRound)})`,
      );
      return row({
        id: "W3",
        workload: `submitMany of ${n.toLocaleString("en-US")} tasks`,
        value: tasksPerSecond(reg),
        unit: "tasks/s",
        baseline: {
          value: tasksPerSecond(base),
          name: "raw better-sqlite3 batched insert (one transaction, prepared)",
        },
        ratio: median(perRound),
        target: { on: "ratio", op: ">=", bound: 0.7, text: "≥ 0.7× raw" },
        durability: "normal",
        note: `after a round each not timed, ${rounds} alternating rounds, median of the per-round ratios ${ratios(perRound)}; ${runQueueKnown ? `times exclude the main thread's wait for a CPU (registry ${waited(reg)}, raw ${waited(base)} of wall time); by wall time ${ratios(wallPerRound)}, median ${median(wallPerRound).toFixed(3)}` : "wall time (this OS does not report run-queue waits)"}`,
      });
    } finally {
      await registry.close();
      raw.close();
    }
  });
}
