/**
 * W1–W3: writing new tasks. Each is measured against raw better-sqlite3 inserting the same row
 * (the registry's own template, same table and indexes, same pragmas) in the same run; rounds
 * alternate between the two so machine noise hits both alike, and the median round counts.
 */
import { openRegistry, type SubmitRequest, type TaskRegistry } from "../../src/index.js";
import {
  createRegistryFile,
  openRaw,
  rawBatchInsert,
  rawSingleInserts,
  registryTemplates,
} from "../raw.js";
import { type BenchContext, type Row, row, timeAsync, withTempDir } from "../util.js";

const KIND = "bench";
const INPUT = { prompt: "summarize the page", url: "https://example.com/a", n: 1 };

export async function runSubmit(ctx: BenchContext): Promise<Row[]> {
  return [await w1(ctx), await w2(ctx), await w3(ctx)];
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
  const rounds = ctx.quick ? 1 : 2;
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
      await registry.submitMany(requests.slice(0, 2000));
      rawBatchInsert(raw, pending, 2000);
      const { a: reg, b: base } = await alternate(
        rounds,
        () => timeAsync(() => registry.submitMany(requests)),
        async () => rawBatchInsert(raw, pending, n),
      );
      ctx.log(`W3 registry ${rates(n, reg)} /s; raw ${rates(n, base)} /s`);
      return row({
        id: "W3",
        workload: `submitMany of ${n.toLocaleString("en-US")} tasks`,
        value: rate(n, reg),
        unit: "tasks/s",
        baseline: {
          value: rate(n, base),
          name: "raw better-sqlite3 batched insert (one transaction, prepared)",
        },
        target: { on: "ratio", op: ">=", bound: 0.7, text: "≥ 0.7× raw" },
        durability: "normal",
        note: `${rounds} alternating round(s); per round: registry ${rates(n, reg)}, raw ${rates(n, base)} tasks/s`,
      });
    } finally {
      await registry.close();
      raw.close();
    }
  });
}
