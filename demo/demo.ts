/**
 * `npm run demo`: crash recovery, end to end, in real processes.
 *
 * 1. This process creates a fresh registry file, demo-data/registry.db, and submits a six-step
 *    agent task. The file stays there after the run, for inspection; the next run replaces it.
 * 2. A worker process runs it; after two steps are persisted and the third has started,
 *    this process kills it with SIGKILL.
 * 3. A new worker process starts under the same name, recovers the task at once, replays the
 *    two finished steps from the checkpoint without running them, re-runs the interrupted one,
 *    and completes the task.
 * 4. This process reopens the file and shows the task, its checkpoint and how often each step
 *    really ran.
 */
import { type ChildProcess, spawn } from "node:child_process";
import { appendFileSync, mkdirSync, readFileSync, rmSync } from "node:fs";
import { relative } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import { openRegistry, stringifyJson } from "../src/index.js";

const STEPS = ["plan", "search", "read", "draft", "review", "publish"] as const;
const KILL_DURING = "read";
const OWNER = "demo-worker"; // stable across restarts, so the restarted worker may recover at once
const DATA = fileURLToPath(new URL("../demo-data/", import.meta.url));

const [role, path] = process.argv.slice(2);
if (role === "worker" && path) await worker(path);
else await main();

async function main(): Promise<void> {
  // One place, started afresh each run, so the step counts below are this run's alone.
  const path = `${DATA}registry.db`;
  mkdirSync(DATA, { recursive: true });
  for (const suffix of ["", "-wal", "-shm", ".executions"]) rmSync(path + suffix, { force: true });
  const registry = await openRegistry(path);
  const id = await registry.submit("research", { topic: "durable agents" });
  await registry.close();
  say("demo", `registry ${relative(process.cwd(), path)} (a new file each run)`);
  say("demo", `submitted ${id} (kind research, ${STEPS.length} steps)`);

  const first = startWorker(path);
  await waitForLine(first, `running ${KILL_DURING}`);
  first.kill("SIGKILL");
  await new Promise((resolve) => first.once("exit", resolve));
  say(
    "demo",
    `killed worker pid ${first.pid} with SIGKILL while step "${KILL_DURING}" was running`,
  );

  const second = startWorker(path);
  const code = await new Promise<number | null>((resolve) => second.once("exit", resolve));
  if (code !== 0) throw new Error(`the second worker exited with ${code}`);

  const reopened = await openRegistry(path, { readOnly: true });
  const record = await reopened.inspect(id);
  const { task } = record;
  say("demo", `reopened the file: ${task.id} is ${task.status} after ${record.runs} runs`);
  for (const step of task.checkpoint?.steps ?? []) {
    const ran = executions(path).filter((name) => name === step.name).length;
    say(
      "demo",
      `  ${step.name.padEnd(8)} ${step.status}  ${step.attempt === 0 ? "replayed (attempt 0)" : `ran in run ${step.attempt}      `}  executed ${ran}×  output ${stringifyJson(step.output)}`,
    );
  }
  const completions = executions(path).filter((line) => line === "(completed)").length;
  say(
    "demo",
    `  result ${stringifyJson(task.checkpoint?.value ?? null)}, completed ${completions}×`,
  );
  await reopened.close();
  say("demo", `${relative(process.cwd(), path)} stays for inspection (tables tasks, task_steps)`);
}

async function worker(path: string): Promise<void> {
  const registry = await openRegistry(path);
  const tag = `worker ${process.pid}`;
  for (const recovered of await registry.recover("research", { owner: OWNER })) {
    const done = recovered.task.checkpoint?.steps.map((s) => s.name).join(", ") || "none";
    say(tag, `recovered ${recovered.task.id} from a dead run; steps in its checkpoint: ${done}`);
  }
  registry.on("claimed", (e) => say(tag, `claimed ${e.id} (run ${e.runs})`));
  registry.on("step", (e) => {
    if (e.replayed) say(tag, `↺ ${e.name.padEnd(8)} replayed from the checkpoint, not executed`);
    else say(tag, `✓ ${e.name.padEnd(8)} persisted`);
  });
  const finished = new Promise<void>((resolve) =>
    registry.on("completed", () => {
      appendFileSync(`${path}.executions`, "(completed)\n");
      resolve();
    }),
  );
  const running = registry.work(
    "research",
    async (_task, ctx) => {
      const notes: string[] = [];
      for (const name of STEPS) {
        notes.push(
          await ctx.step(name, async () => {
            appendFileSync(`${path}.executions`, `${name}\n`); // a side effect outside the registry
            say(tag, `▶ running ${name}`);
            await sleep(250);
            return `${name} of ${(ctx.input as { topic: string }).topic}`;
          }),
        );
      }
      return { summary: notes.join(" → ") };
    },
    { owner: OWNER, leaseMs: 2_000 },
  );
  await finished;
  say(tag, "task completed; stopping");
  await running.stop();
  await registry.close();
}

function executions(path: string): string[] {
  return readFileSync(`${path}.executions`, "utf8").trim().split("\n");
}

function startWorker(path: string): ChildProcess {
  const child = spawn(
    process.execPath,
    ["--import", "tsx", fileURLToPath(import.meta.url), "worker", path],
    {
      stdio: ["ignore", "pipe", "inherit"],
    },
  );
  child.stdout?.setEncoding("utf8");
  child.stdout?.on("data", (chunk: string) => process.stdout.write(chunk));
  return child;
}

function waitForLine(child: ChildProcess, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    child.stdout?.on("data", (chunk: string) => {
      if (chunk.includes(text)) resolve();
    });
    child.once("exit", () => reject(new Error(`the worker exited before "${text}"`)));
  });
}

function say(who: string, line: string): void {
  process.stdout.write(`[${who}] ${line}\n`);
}
