/**
 * W7: pickup latency, from just before `submit` is called to the first line of the handler, for
 * an idle worker with default options.
 *   - same process: the submitter and the worker share the registry;
 *   - other process: a child process submits (stamping the task with wall-clock time,
 *     performance.timeOrigin + performance.now()), the parent's idle worker picks it up.
 * Between tasks the worker goes idle again (10–20 ms).
 */
import { fileURLToPath } from "node:url";
import { type Durability, openRegistry, type Task } from "../../src/index.js";
import { openRaw, rawSingleInserts, registryTemplates } from "../raw.js";
import {
  type BenchContext,
  median,
  percentile,
  type Row,
  row,
  sleep,
  startChild,
  stopChild,
  type TempDir,
  wallClockMs,
  withTempDir,
} from "../util.js";
import type { PickupChildConfig } from "./pickup-child.js";

const CHILD = fileURLToPath(new URL("./pickup-child.ts", import.meta.url));
const KIND = "pickup";
const WARMUP = 10;

interface Stamp {
  readonly t: number;
  readonly i: number;
}

/** A registry with an idle worker that records pickup latency per task. */
async function pickupRig(path: string, durability: Durability) {
  const registry = await openRegistry(path, { durability });
  const latencies = new Map<number, number>();
  const waiters = new Map<number, () => void>();
  const worker = registry.work(KIND, (task: Task) => {
    const now = wallClockMs();
    const stamp = task.input as unknown as Stamp;
    latencies.set(stamp.i, now - stamp.t);
    waiters.get(stamp.i)?.();
    return null;
  });
  const handled = (i: number) =>
    new Promise<void>((resolve) => {
      if (latencies.has(i)) resolve();
      else waiters.set(i, resolve);
    });
  const close = async () => {
    await worker.stop();
    await registry.close();
  };
  return { registry, latencies, handled, close };
}

async function sameProcess(dir: TempDir, durability: Durability, count: number): Promise<number[]> {
  const rig = await pickupRig(dir.file(`same-${durability}.db`), durability);
  try {
    for (let i = 0; i < WARMUP + count; i++) {
      await sleep(10 + Math.random() * 10);
      const handled = rig.handled(i);
      await rig.registry.submit(KIND, { t: wallClockMs(), i });
      await handled;
    }
    return [...rig.latencies.entries()].filter(([i]) => i >= WARMUP).map(([, ms]) => ms);
  } finally {
    await rig.close();
  }
}

async function otherProcess(
  dir: TempDir,
  durability: Durability,
  count: number,
): Promise<number[]> {
  const path = dir.file(`other-${durability}.db`);
  const rig = await pickupRig(path, durability);
  const config: PickupChildConfig = { path, kind: KIND, count: WARMUP + count, durability };
  const child = startChild(CHILD, config);
  try {
    await child.ready;
    const submitted = child.waitForLine((line) => line === "submitted");
    child.send("go");
    await submitted;
    await Promise.all(Array.from({ length: WARMUP + count }, (_, i) => rig.handled(i)));
    return [...rig.latencies.entries()].filter(([i]) => i >= WARMUP).map(([, ms]) => ms);
  } finally {
    await stopChild(child, "stop", 2000);
    await rig.close();
  }
}

export async function runPickup(ctx: BenchContext): Promise<Row[]> {
  const count = ctx.quick ? 40 : 300;
  return withTempDir("w7", async (dir) => {
    const same = await sameProcess(dir, "normal", count);
    const other = await otherProcess(dir, "normal", count);
    // For reference: at full durability the commit's fsync is part of the pickup.
    const sameFull = await sameProcess(dir, "full", Math.min(count, 100));
    const { pending } = await registryTemplates(KIND, { t: 0, i: 0 });
    const raw = openRaw(dir.file("same-full.db"), "full");
    const fsyncMs = rawSingleInserts(raw, pending, 50) / 50;
    raw.close();
    const stats = (xs: number[]) => ({ p50: median(xs), p99: percentile(xs, 99) });
    const s = stats(same);
    const o = stats(other);
    const f = stats(sameFull);
    ctx.log(
      `W7 same p50 ${s.p50.toFixed(3)} p99 ${s.p99.toFixed(3)} ms; other p50 ${o.p50.toFixed(3)} p99 ${o.p99.toFixed(3)} ms; same at full p50 ${f.p50.toFixed(3)} ms (raw commit at full ${fsyncMs.toFixed(3)} ms)`,
    );
    const p50Target = { on: "value", op: "<=", bound: 1, text: "p50 ≤ 1 ms" } as const;
    const p99Target = { on: "value", op: "<=", bound: 10, text: "p99 ≤ 10 ms" } as const;
    const fullNote = `at durability full (default) same-process p50 is ${f.p50.toFixed(2)} ms, p99 ${f.p99.toFixed(2)} ms; a raw commit at full takes ${fsyncMs.toFixed(2)} ms here`;
    return [
      row({
        id: "W7",
        workload: "pickup latency submit→handler, same process, p50",
        value: s.p50,
        unit: "ms",
        target: p50Target,
        durability: "normal",
        note: `${count} samples; ${fullNote}`,
      }),
      row({
        id: "W7",
        workload: "pickup latency submit→handler, same process, p99",
        value: s.p99,
        unit: "ms",
        target: p99Target,
        durability: "normal",
        note: `${count} samples`,
      }),
      row({
        id: "W7",
        workload: "pickup latency submit→handler, other process, p50",
        value: o.p50,
        unit: "ms",
        target: p50Target,
        durability: "normal",
        note: `${count} samples; the idle worker polls PRAGMA data_version every 5 ms (changePollMs default)`,
      }),
      row({
        id: "W7",
        workload: "pickup latency submit→handler, other process, p99",
        value: o.p99,
        unit: "ms",
        target: p99Target,
        durability: "normal",
        note: `${count} samples; stamps are performance.timeOrigin + performance.now() in each process`,
      }),
    ];
  });
}
