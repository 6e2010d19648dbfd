/**
 * W8: how long one write blocks the event loop. A tight setImmediate loop records the largest
 * gap between its ticks while one 64 KB checkpoint is written with `registry.checkpoint` (the
 * seed's API); the figure is the p99 over many writes of that largest gap. The baseline is raw
 * better-sqlite3 writing the same document (read + update in one immediate transaction),
 * measured the same way: a synchronous driver blocks for the whole write, fsync included.
 *
 * Each durability is measured in a fresh child process (blocking-child.ts) with V8's
 * garbage collector on the main thread only (`--single-threaded-gc`): a pause the collector
 * causes then never waits for a helper thread that the machine's other processes keep off
 * the CPUs, and is counted in full (on an idle machine this can only lengthen pauses). Each
 * pause excludes the main thread's wait for a CPU inside it (util.ts runQueueClock). A
 * control window after each write, the loop idle for as long, shows what the machine does to
 * the loop by itself: on this shared VM it stalls even an idle loop 5–200 ms at times, with
 * no run-queue wait, context switch or GC to show for it (the host not running the VM).
 */
import { fileURLToPath } from "node:url";
import { type Crux, encodeCrux, newCruxId, type Step } from "../../src/index.js";
import {
  type BenchContext,
  median,
  percentile,
  type Row,
  row,
  startChild,
  stopChild,
  withTempDir,
} from "../util.js";
import type { BlockingChildConfig, BlockingResult, Pause } from "./blocking-child.js";

const CHILD = fileURLToPath(new URL("./blocking-child.ts", import.meta.url));
const CHECKPOINT_BYTES = 64 * 1024;
/** The target: p99 of the pauses at most this. */
const BOUND_MS = 2;

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

async function measure(config: BlockingChildConfig): Promise<BlockingResult> {
  const child = startChild(CHILD, config, ["--single-threaded-gc"]);
  try {
    const line = await child.waitForLine((l) => l.startsWith("result "));
    return JSON.parse(line.slice("result ".length)) as BlockingResult;
  } finally {
    await stopChild(child, "stop", 2000);
  }
}

const ms = (value: number) => `${value.toFixed(2)} ms`;

export async function runBlocking(ctx: BenchContext): Promise<Row[]> {
  const writes = ctx.quick ? 60 : 600;
  const warmUp = ctx.quick ? 20 : 100;
  return withTempDir("w8", async (dir) => {
    const rows: Row[] = [];
    for (const durability of ["full", "normal"] as const) {
      const result = await measure({
        dir: dir.dir,
        durability,
        bytes: CHECKPOINT_BYTES,
        warmUp,
        writes,
      });
      const own = (pauses: readonly Pause[]) => pauses.map((p) => p.own);
      const wall = (pauses: readonly Pause[]) => pauses.map((p) => p.wall);
      const p99 = percentile(own(result.registry), 99);
      const rawP99 = percentile(own(result.raw), 99);
      const idleP99 = percentile(own(result.idle), 99);
      const moved = `${result.collectionsMoved} garbage collections outside the registry's windows counted for the write before them`;
      const summary = `registry p50 ${ms(median(own(result.registry)))}, max ${ms(Math.max(...own(result.registry)))}; raw p50 ${ms(median(own(result.raw)))} (a synchronous driver blocks for the whole write, fsync included); an idle loop over as long a window (the control) p99 ${ms(idleP99)}${idleP99 > BOUND_MS ? `, above ${BOUND_MS} ms: the machine alone stalls the loop that long, so this run cannot tell whether the writes stay under it` : ""}`;
      const wallSummary = `by wall clock p99 ${ms(percentile(wall(result.registry), 99))} (raw ${ms(percentile(wall(result.raw), 99))})`;
      ctx.log(
        `W8 ${durability}: registry p99 ${ms(p99)}, raw p99 ${ms(rawP99)}; ${summary}; ${wallSummary}`,
      );
      rows.push(
        row({
          id: "W8",
          workload: "event-loop pause per 64 KB registry.checkpoint, p99",
          value: p99,
          unit: "ms",
          baseline: { value: rawP99, name: "raw better-sqlite3 writing the same document" },
          target: { on: "value", op: "<=", bound: BOUND_MS, text: `p99 ≤ ${BOUND_MS} ms` },
          durability,
          note: `${writes} writes after ${warmUp} not counted, alternating with raw, in a fresh process with a single-threaded GC; ${moved}; ${result.runQueueKnown ? `each pause without the main thread's wait for a CPU inside it, ${wallSummary}` : "wall clock (this OS does not report run-queue waits)"}; ${summary}`,
        }),
      );
    }
    return rows;
  });
}
