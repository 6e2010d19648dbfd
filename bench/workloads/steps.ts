/**
 * W6: durable steps.
 *
 * Time: a handler runs 1,000 `ctx.step` calls with 1 KB outputs; each call is timed. The cost
 * of step ~10 is the median over steps 6–15, of step ~1,000 the median over steps 991–1,000.
 *
 * Space: the live bytes (pages in use, free pages excluded) a 1,000-step run with 1 KB outputs
 * adds to a fresh database, after it completed, against
 *   - the payload: the bytes of the steps' output JSON,
 *   - the steps' JSON as the registry writes them (`task_steps.data` just before completion),
 *   - the same run through LangGraph's SqliteSaver: before each step its write goes to
 *     `putWrites`, after it a checkpoint whose channel values hold every output so far is
 *     `put`, as LangGraph's Pregel loop does with an appending (reducer) channel.
 */
import type { RunnableConfig } from "@langchain/core/runnables";
import { type Checkpoint, uuid6 } from "@langchain/langgraph-checkpoint";
import { SqliteSaver } from "@langchain/langgraph-checkpoint-sqlite";
import type Database from "better-sqlite3";
import { openRegistry, type TaskRegistry } from "../../src/index.js";
import { liveBytes, openRaw } from "../raw.js";
import { type BenchContext, median, type Row, row, withTempDir } from "../util.js";

const KIND = "steps";

/** A step output whose JSON is exactly `bytes` bytes: `{"i":…,"text":"…"}`. */
export function output(i: number, bytes = 1024): { i: number; text: string } {
  const overhead = JSON.stringify({ i, text: "" }).length;
  const alphabet = "abcdefghijklmnopqrstuvwxyz0123456789";
  let text = "";
  for (let k = 0; k < bytes - overhead; k++) text += alphabet[(i * 7 + k * 13) % alphabet.length];
  return { i, text };
}

/** Run one task of `steps` steps to completion; per-step times (ms), and `atLastStep` before returning. */
async function runSteps(
  registry: TaskRegistry,
  steps: number,
  outputs: readonly { i: number; text: string }[],
  atLastStep: (id: string) => void = () => undefined,
): Promise<number[]> {
  const times: number[] = [];
  const id = await registry.submit(KIND, { steps });
  const finished = new Promise<void>((resolve, reject) => {
    const offDone = registry.on("completed", (e) => {
      if (e.id !== id) return;
      offDone();
      offFailed();
      resolve();
    });
    const offFailed = registry.on("failed", (e) => {
      if (e.id !== id) return;
      offDone();
      offFailed();
      reject(new Error(`the ${steps}-step task failed: ${JSON.stringify(e.error)}`));
    });
  });
  const worker = registry.work(KIND, async (_task, ctx) => {
    for (let i = 0; i < steps; i++) {
      const start = performance.now();
      await ctx.step(`step-${i}`, () => outputs[i]);
      times.push(performance.now() - start);
    }
    atLastStep(id);
    return { steps };
  });
  try {
    await finished;
  } finally {
    await worker.stop();
  }
  return times;
}

interface StepTiming {
  readonly early: number;
  readonly late: number;
}

async function stepTiming(steps: number, runs: number, ctx: BenchContext): Promise<StepTiming[]> {
  const outputs = Array.from({ length: steps }, (_, i) => output(i));
  return withTempDir("w6-time", async (dir) => {
    const registry = await openRegistry(dir.file("registry.db"), { durability: "normal" });
    try {
      await runSteps(registry, steps, outputs); // warm-up run, not counted
      const results: StepTiming[] = [];
      for (let r = 0; r < runs; r++) {
        const times = await runSteps(registry, steps, outputs);
        const early = median(times.slice(5, 15));
        const late = median(times.slice(steps - 10, steps));
        ctx.log(
          `W6 run ${r + 1}: step ~10 ${(early * 1000).toFixed(0)} µs, step ~${steps} ${(late * 1000).toFixed(0)} µs`,
        );
        results.push({ early, late });
      }
      return results;
    } finally {
      await registry.close();
    }
  });
}

interface Space {
  readonly steps: number;
  readonly payloadBytes: number;
  readonly stepJsonBytes: number;
  readonly midRunBytes: number;
  readonly storedBytes: number;
  readonly langGraphBytes: number;
  readonly langGraphMs: number;
}

async function registryBytes(
  steps: number,
  outputs: readonly { i: number; text: string }[],
): Promise<{ stored: number; midRun: number; stepJson: number }> {
  return withTempDir("w6-bytes", async (dir) => {
    const path = dir.file("registry.db");
    const registry = await openRegistry(path, { durability: "normal" });
    const reader = openRaw(path, "normal");
    try {
      const before = liveBytes(reader);
      let midRun = 0;
      let stepJson = 0;
      await runSteps(registry, steps, outputs, (id) => {
        midRun = liveBytes(reader) - before;
        stepJson = (
          reader
            .prepare(
              "select coalesce(sum(length(cast(data as blob))), 0) as n from task_steps where task = (select seq from tasks where id = ?)",
            )
            .get(id) as { n: number }
        ).n;
      });
      return { stored: liveBytes(reader) - before, midRun, stepJson };
    } finally {
      await registry.close();
      reader.close();
    }
  });
}

async function langGraphBytes(
  steps: number,
  outputs: readonly { i: number; text: string }[],
): Promise<{ bytes: number; ms: number }> {
  return withTempDir("w6-langgraph", async (dir) => {
    const db: Database.Database = openRaw(dir.file("langgraph.db"), "normal");
    try {
      const saver = new SqliteSaver(db);
      await saver.getTuple({ configurable: { thread_id: "setup" } }); // creates its tables
      const before = liveBytes(db);
      const start = performance.now();
      const values: unknown[] = [];
      const checkpoint = (step: number): Checkpoint => ({
        v: 4,
        id: uuid6(step),
        ts: new Date().toISOString(),
        channel_values: { outputs: [...values] },
        channel_versions: { outputs: step + 2 },
        versions_seen: step < 0 ? {} : { agent: { outputs: step + 1 } },
      });
      let config: RunnableConfig = { configurable: { thread_id: "run", checkpoint_ns: "" } };
      config = await saver.put(config, checkpoint(-1), { source: "input", step: -1, parents: {} });
      for (let i = 0; i < steps; i++) {
        // The node's write is saved against the checkpoint it ran from, then the next one.
        await saver.putWrites(config, [["outputs", outputs[i]]], `task-${i}`);
        values.push(outputs[i]);
        config = await saver.put(config, checkpoint(i), { source: "loop", step: i, parents: {} });
      }
      const ms = performance.now() - start;
      return { bytes: liveBytes(db) - before, ms };
    } finally {
      db.close();
    }
  });
}

async function space(steps: number, ctx: BenchContext): Promise<Space> {
  const outputs = Array.from({ length: steps }, (_, i) => output(i));
  const payloadBytes = outputs.reduce((sum, o) => sum + Buffer.byteLength(JSON.stringify(o)), 0);
  const ours = await registryBytes(steps, outputs);
  const lg = await langGraphBytes(steps, outputs);
  ctx.log(
    `W6 bytes: payload ${payloadBytes}, steps' JSON ${ours.stepJson}, registry ${ours.stored} (mid-run ${ours.midRun}), LangGraph ${lg.bytes} (${lg.ms.toFixed(0)} ms)`,
  );
  return {
    steps,
    payloadBytes,
    stepJsonBytes: ours.stepJson,
    midRunBytes: ours.midRun,
    storedBytes: ours.stored,
    langGraphBytes: lg.bytes,
    langGraphMs: lg.ms,
  };
}

export async function runSteps1000(ctx: BenchContext): Promise<Row[]> {
  const steps = 1000;
  const runs = ctx.quick ? 1 : 5;
  const timing = await stepTiming(steps, runs, ctx);
  const late = median(timing.map((t) => t.late)) * 1000;
  const early = median(timing.map((t) => t.early)) * 1000;
  const spaceSteps = ctx.quick ? 200 : 1000;
  const s = await space(spaceSteps, ctx);
  const run = `a ${spaceSteps.toLocaleString("en-US")}-step run with 1 KB outputs`;
  return [
    row({
      id: "W6",
      workload: `durable step: time of step ~${steps.toLocaleString("en-US")} vs step ~10`,
      value: late,
      unit: "µs",
      baseline: { value: early, name: "step ~10 of the same run" },
      target: { on: "ratio", op: "<=", bound: 1.5, text: "≤ 1.5×" },
      durability: "normal",
      note: `median per-step time over steps 991–1000 vs 6–15, median of ${runs} runs; per run (µs) ${timing.map((t) => `${(t.late * 1000).toFixed(0)}/${(t.early * 1000).toFixed(0)}`).join(", ")}`,
    }),
    row({
      id: "W6",
      workload: `bytes stored for ${run} vs payload (outputs' JSON)`,
      value: s.storedBytes,
      unit: "B",
      baseline: { value: s.payloadBytes, name: "sum of the outputs' JSON bytes" },
      target: { on: "ratio", op: "<=", bound: 1.2, text: "≤ 1.2× payload" },
      durability: "normal",
      note: `live pages after completion; mid-run (steps in task_steps, before completion) ${s.midRunBytes} B = ${(s.midRunBytes / s.payloadBytes).toFixed(2)}× payload`,
    }),
    row({
      id: "W6",
      workload: `bytes stored for ${run} vs the steps' JSON`,
      value: s.storedBytes,
      unit: "B",
      baseline: { value: s.stepJsonBytes, name: "sum of the steps' JSON bytes as written" },
      target: { on: "ratio", op: "<=", bound: 1.2, text: "≤ 1.2× steps' JSON" },
      durability: "normal",
      note: `steps' JSON = task_steps.data just before completion; mid-run ${(s.midRunBytes / s.stepJsonBytes).toFixed(2)}×`,
    }),
    row({
      id: "W6",
      workload: `bytes stored for ${run} vs LangGraph SqliteSaver`,
      value: s.storedBytes,
      unit: "B",
      baseline: { value: s.langGraphBytes, name: "LangGraph SqliteSaver, a checkpoint per step" },
      target: { on: "ratio", op: "<=", bound: 0.1, text: "≤ 0.1× LangGraph" },
      durability: "normal",
      note: `SqliteSaver: putWrites + put(checkpoint with all outputs so far) per step, ${s.langGraphMs.toFixed(0)} ms for the run`,
    }),
  ];
}
