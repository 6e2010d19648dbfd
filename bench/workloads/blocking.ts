/**
 * W8: how long one write blocks the event loop. A tight setImmediate loop records the largest
 * gap between its ticks while one 64 KB checkpoint is written with `registry.checkpoint` (the
 * seed's API); the figure is the p99 over many writes of that largest gap. The baseline is raw
 * better-sqlite3 writing the same document (read + update in one immediate transaction),
 * measured the same way: a synchronous driver blocks for the whole write, fsync included.
 */
import type Database from "better-sqlite3";
import {
  type Crux,
  type Durability,
  encodeCrux,
  newCruxId,
  openRegistry,
  type Step,
} from "../../src/index.js";
import { createRegistryFile, insertSql, openRaw, rawDocumentWriter, readRow } from "../raw.js";
import {
  type BenchContext,
  median,
  percentile,
  type Row,
  row,
  type TempDir,
  withTempDir,
} from "../util.js";

const KIND = "blocking";
const CHECKPOINT_BYTES = 64 * 1024;

/** Records the largest gap between consecutive setImmediate ticks since the last reset. */
class LoopMonitor {
  #last = performance.now();
  #max = 0;
  #running = false;

  start(): void {
    this.#running = true;
    this.#last = performance.now();
    const tick = () => {
      if (!this.#running) return;
      const now = performance.now();
      this.#max = Math.max(this.#max, now - this.#last);
      this.#last = now;
      setImmediate(tick);
    };
    setImmediate(tick);
  }

  reset(): void {
    this.#max = 0;
  }

  get max(): number {
    return this.#max;
  }

  stop(): void {
    this.#running = false;
  }
}

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

/** A Crux of 16 steps whose JSON (as the registry writes it) is exactly `bytes` long. */
export function bigCrux(bytes: number): Crux {
  const now = new Date().toISOString();
  const make = (lengths: number[]): Crux => ({
    id: newCruxId(),
    agent: "bench",
    value: { Ok: null },
    steps: lengths.map(
      (length, i): Step => ({
        name: `step-${i}`,
        kind: "plain",
        status: "ok",
        confidence: 1,
        started_at: now,
        duration_ms: 3,
        input_hash: BigInt(1000 + i),
        content_hash: null,
        output: { text: "x".repeat(length) },
        error: null,
        attempt: 1,
        events: [],
        metadata: {},
      }),
    ),
    children: [],
    started_at: now,
    finished_at: null,
  });
  const lengths = Array.from({ length: 16 }, () => 3900);
  const size = encodeCrux(make(lengths)).length;
  lengths[15] = (lengths[15] as number) + (bytes - size);
  return make(lengths);
}

interface Pauses {
  readonly registry: number[];
  readonly raw: number[];
}

async function measure(
  dir: TempDir,
  durability: Durability,
  writes: number,
  crux: Crux,
): Promise<Pauses> {
  const path = dir.file(`registry-${durability}.db`);
  const registry = await openRegistry(path, { durability });
  const rawPath = dir.file(`raw-${durability}.db`);
  await createRegistryFile(rawPath, durability);
  let raw: Database.Database | undefined;
  const monitor = new LoopMonitor();
  try {
    const id = await registry.submit(KIND, { n: 1 });
    await registry.checkpoint(id, crux);
    // The raw baseline writes the very document the registry stored, to a copy of its row.
    const reader = openRaw(path, durability);
    const stored = readRow(reader, id);
    reader.close();
    raw = openRaw(rawPath, durability);
    raw.prepare(insertSql(stored)).run(...Object.values(stored));
    const write = rawDocumentWriter(raw);

    monitor.start();
    const pauses: Pauses = { registry: [], raw: [] };
    for (let i = 0; i < 10; i++) {
      await registry.checkpoint(id, crux);
      write(id, stored.data);
      await turns(2);
    }
    for (let i = 0; i < writes; i++) {
      await turns(3);
      monitor.reset();
      await registry.checkpoint(id, crux);
      await turns(3);
      pauses.registry.push(monitor.max);

      monitor.reset();
      write(id, stored.data);
      await turns(3);
      pauses.raw.push(monitor.max);
    }
    return pauses;
  } finally {
    monitor.stop();
    await registry.close();
    raw?.close();
  }
}

export async function runBlocking(ctx: BenchContext): Promise<Row[]> {
  const writes = ctx.quick ? 30 : 300;
  const crux = bigCrux(CHECKPOINT_BYTES);
  return withTempDir("w8", async (dir) => {
    const rows: Row[] = [];
    for (const durability of ["full", "normal"] as const) {
      const pauses = await measure(dir, durability, writes, crux);
      const p99 = percentile(pauses.registry, 99);
      const rawP99 = percentile(pauses.raw, 99);
      ctx.log(
        `W8 ${durability}: registry p50 ${median(pauses.registry).toFixed(2)} p99 ${p99.toFixed(2)} max ${Math.max(...pauses.registry).toFixed(2)} ms; raw p50 ${median(pauses.raw).toFixed(2)} p99 ${rawP99.toFixed(2)} ms`,
      );
      rows.push(
        row({
          id: "W8",
          workload: "event-loop pause per 64 KB registry.checkpoint, p99",
          value: p99,
          unit: "ms",
          baseline: { value: rawP99, name: "raw better-sqlite3 writing the same document" },
          target: { on: "value", op: "<=", bound: 2, text: "p99 ≤ 2 ms" },
          durability,
          note: `${writes} writes; registry p50 ${median(pauses.registry).toFixed(2)} ms, max ${Math.max(...pauses.registry).toFixed(2)} ms; raw p50 ${median(pauses.raw).toFixed(2)} ms (a synchronous driver blocks for the whole write, fsync included)`,
        }),
      );
    }
    return rows;
  });
}
