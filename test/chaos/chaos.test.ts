/**
 * Chaos: worker processes on one SQLite file, SIGKILLed at random moments and replaced, until
 * every task is done. Then: every task is done exactly once with the right result and
 * checkpoint, no step whose result was stored ever ran again in a later run, no child printed
 * an error, and the file is sound.
 *
 * Each child (chaos-worker.ts) runs `registry.work("chaos", …)` with short leases and logs
 * every step it runs, stores or replays, every completion and every lease it takes back to its
 * own file (format in chaos-log.ts).
 * The parent's random choices come from a seeded PRNG (set CHAOS_SEED to reuse one); the
 * timing of kills relative to the children's work is not reproducible, so every assertion
 * holds for any interleaving.
 */
import type { ChildProcessWithoutNullStreams } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it } from "vitest";
import type { TaskId } from "../../src/ids.js";
import { openRegistry } from "../../src/open.js";
import { tempDbPath } from "../support/backends.js";
import { spawnScript } from "../support/child.js";
import { prng } from "../support/prng.js";
import {
  CHAOS_KIND,
  type ChaosInput,
  expectedResult,
  type LogLine,
  parseLog,
  type ReplayedLine,
  type StepLine,
  type StepOutput,
  stepValue,
} from "./chaos-log.js";
import type { ChaosWorkerConfig } from "./chaos-worker.js";

const WORKER = join(dirname(fileURLToPath(import.meta.url)), "chaos-worker.ts");

const TASKS = 300;
const WORKERS = 3;
/** Worker processes started ahead of need, to replace killed ones. */
const SPARES = 2;
const CONCURRENCY = 2;
const LEASE_MS = 400;
const POLL_INTERVAL_MS = 100;
/** A kill every 300–800 ms… */
const KILL_MIN_MS = 300;
const KILL_SPREAD_MS = 500;
/** …for at most this long (the work normally ends well before); then the survivors finish in peace. */
const CHAOS_MS = 30_000;
/** Every task must be done by then. */
const DEADLINE_MS = 50_000;

interface Exit {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

interface Child {
  readonly incarnation: number;
  readonly process: ChildProcessWithoutNullStreams;
  readonly pid: number;
  readonly owner: string;
  readonly logPath: string;
  /**
   * spare: loaded, waiting for `go`; live: told to work; killed: SIGKILLed by the test;
   * stopped: sent SIGTERM at the end; unused: a spare whose stdin was closed at the end.
   */
  state: "spare" | "live" | "killed" | "stopped" | "unused";
  stderr: string;
  /** Printed `loaded`: its modules are loaded, it can take over at once. */
  loaded: boolean;
  /** Printed `ready`: its worker runs and its SIGTERM handler is installed. */
  ready: boolean;
  /** Resolves when the child is ready, or has exited. */
  readonly started: Promise<void>;
  exit: Exit | undefined;
  readonly exited: Promise<Exit>;
}

interface Kill {
  readonly owner: string;
  /** Epoch ms. */
  readonly at: number;
  /** Tasks leased to the victim just before the kill. */
  readonly leased: number;
}

const spawned = new Set<ChildProcessWithoutNullStreams>();

afterEach(() => {
  // A failed or timed-out test must not leave children behind.
  for (const child of spawned) child.kill("SIGKILL");
  spawned.clear();
});

/** Start a spare worker process: it loads, then waits for go(). */
function spawnSpare(path: string, incarnation: number): Child {
  const logPath = `${path}.worker${incarnation}.log`;
  const config: ChaosWorkerConfig = {
    path,
    logPath,
    incarnation,
    concurrency: CONCURRENCY,
    leaseMs: LEASE_MS,
    pollIntervalMs: POLL_INTERVAL_MS,
  };
  const proc = spawnScript(WORKER, config);
  spawned.add(proc);
  const pid = proc.pid;
  if (pid === undefined) throw new Error(`cannot start worker ${incarnation}`);
  let stdout = "";
  let markStarted = () => {};
  const started = new Promise<void>((resolve) => {
    markStarted = resolve;
  });
  const exited = new Promise<Exit>((resolve, reject) => {
    proc.on("error", reject);
    proc.on("close", (code, signal) => {
      spawned.delete(proc);
      child.exit = { code, signal };
      markStarted();
      resolve(child.exit);
    });
  });
  const child: Child = {
    incarnation,
    process: proc,
    pid,
    owner: `chaos-${incarnation}-${pid}`,
    logPath,
    state: "spare",
    stderr: "",
    loaded: false,
    ready: false,
    started,
    exit: undefined,
    exited,
  };
  // Writing `go` to (or ending the stdin of) a child that just died fails with EPIPE; its exit
  // is what the test looks at.
  proc.stdin.on("error", () => {});
  proc.stdout.setEncoding("utf8");
  proc.stderr.setEncoding("utf8");
  proc.stdout.on("data", (chunk: string) => {
    stdout += chunk;
    const lines = stdout.split("\n");
    if (lines.includes("loaded")) child.loaded = true;
    if (!child.ready && lines.includes("ready")) {
      child.ready = true;
      markStarted();
    }
  });
  proc.stderr.on("data", (chunk: string) => {
    child.stderr += chunk;
  });
  return child;
}

function go(child: Child): void {
  child.state = "live";
  child.process.stdin.write("go\n");
}

/** Task counts by status, from a plain read connection (reads never wait for writers in WAL). */
function statusCounts(db: Database.Database): Record<string, number> {
  const rows = db.prepare("select status, count(*) as n from tasks group by status").all() as {
    status: string;
    n: number;
  }[];
  return Object.fromEntries(rows.map((row) => [row.status, row.n]));
}

function leasedTo(db: Database.Database, owner: string): number {
  const row = db
    .prepare("select count(*) as n from tasks where status = 'running' and lease_owner = ?")
    .get(owner) as { n: number };
  return row.n;
}

/** A read that a crashed writer's WAL recovery may briefly refuse: try again later. */
function tryRead<T>(read: () => T): T | undefined {
  try {
    return read();
  } catch (error) {
    if (error instanceof Database.SqliteError && error.code.startsWith("SQLITE_BUSY")) {
      return undefined;
    }
    throw error;
  }
}

function integrityCheck(path: string): unknown {
  const db = new Database(path, { readonly: true });
  try {
    return db.pragma("integrity_check", { simple: false });
  } finally {
    db.close();
  }
}

describe("chaos: worker processes killed at random", () => {
  it(`${TASKS} multi-step tasks, ${WORKERS} workers SIGKILLed and replaced: each done exactly once, stored steps never re-run`, {
    timeout: 90_000,
  }, async () => {
    const seed = Number(process.env.CHAOS_SEED ?? Math.floor(Math.random() * 2 ** 31));
    const random = prng(seed);
    const started = Date.now();
    const path = tempDbPath();

    // ── Submit ──────────────────────────────────────────────────────────────────────
    const inputs = new Map<TaskId, ChaosInput>();
    {
      const setup = await openRegistry(path);
      const requests = Array.from({ length: TASKS }, (_, index) => ({
        kind: CHAOS_KIND,
        input: { index, steps: 3 + Math.floor(random() * 4) } satisfies ChaosInput,
        // Every kill costs the victim's tasks a run; they must never run out of runs here.
        options: { maxAttempts: 1_000_000 },
      }));
      const ids = await setup.submitMany(requests);
      ids.forEach((id, i) => {
        inputs.set(id, requests[i]?.input as ChaosInput);
      });
      await setup.close();
    }
    const totalSteps = [...inputs.values()].reduce((n, input) => n + input.steps, 0);

    // ── Chaos ───────────────────────────────────────────────────────────────────────
    // Spares load ahead of need, and a worker is only killed when a loaded spare can take
    // over at once: the kill rate adapts to how fast this machine starts processes, and the
    // workers never all sit waiting for Node and tsx to start.
    const children: Child[] = [];
    const spawnChild = () => {
      const child = spawnSpare(path, children.length);
      children.push(child);
      return child;
    };
    for (let i = 0; i < WORKERS; i++) go(spawnChild());
    const spares: Child[] = [];
    for (let i = 0; i < SPARES; i++) spares.push(spawnChild());

    const kills: Kill[] = [];
    const db = new Database(path);
    let counts: Record<string, number> = {};
    let allDone = false;
    try {
      while (Date.now() - started < DEADLINE_MS) {
        const chaos = Date.now() - started < CHAOS_MS;
        await sleep(chaos ? KILL_MIN_MS + random() * KILL_SPREAD_MS : 100);
        counts = tryRead(() => statusCounts(db)) ?? counts;
        if (counts.done === TASKS) {
          allDone = true;
          break;
        }
        for (const child of children) {
          if ((child.state === "live" || child.state === "spare") && child.exit !== undefined) {
            throw new Error(
              `worker ${child.incarnation} (pid ${child.pid}, ${child.state}) exited on its own: ` +
                `${JSON.stringify(child.exit)}\n${child.stderr}`,
            );
          }
        }
        if (!chaos) continue;
        const candidates = children.filter((child) => child.state === "live" && child.ready);
        const victim = candidates[Math.floor(random() * candidates.length)];
        const replacement = spares.find((child) => child.loaded);
        if (victim === undefined || replacement === undefined) continue;
        const leased = tryRead(() => leasedTo(db, victim.owner)) ?? 0;
        victim.state = "killed";
        victim.process.kill("SIGKILL");
        kills.push({ owner: victim.owner, at: Date.now(), leased });
        spares.splice(spares.indexOf(replacement), 1);
        go(replacement);
        spares.push(spawnChild());
      }
      counts = tryRead(() => statusCounts(db)) ?? counts;
    } finally {
      db.close();
    }
    const chaosEndedMs = Date.now() - started;

    // ── Stop the survivors ──────────────────────────────────────────────────────────
    const stopTimeout = sleep(20_000).then(() => "timeout" as const);
    for (const spare of spares) {
      spare.state = "unused";
      spare.process.stdin.end();
    }
    const live = children.filter((child) => child.state === "live");
    // A worker told to go just now installs its SIGTERM handler when it is ready.
    await Promise.race([Promise.all(live.map((child) => child.started)), stopTimeout]);
    for (const child of live) {
      child.state = "stopped";
      child.process.kill("SIGTERM");
    }
    for (const child of [...live, ...spares]) {
      const exit = await Promise.race([child.exited, stopTimeout]);
      if (exit === "timeout") child.process.kill("SIGKILL");
      expect(exit, `worker ${child.incarnation} at the end; stderr:\n${child.stderr}`).toEqual({
        code: 0,
        signal: null,
      });
    }
    await Promise.all(children.map((child) => child.exited));
    for (const child of children) {
      // A killed child died of SIGKILL; nothing else may end a child, and none may complain.
      expect(child.exit, `worker ${child.incarnation} exit`).toEqual(
        child.state === "killed" ? { code: null, signal: "SIGKILL" } : { code: 0, signal: null },
      );
      expect(child.stderr, `stderr of worker ${child.incarnation} (pid ${child.pid})`).toBe("");
    }
    expect(
      allDone,
      `not every task was done within ${DEADLINE_MS} ms: ${JSON.stringify(counts)}`,
    ).toBe(true);

    // ── The logs ────────────────────────────────────────────────────────────────────
    const lines: LogLine[] = [];
    let torn = 0;
    for (const child of children) {
      if (!existsSync(child.logPath)) continue; // killed before it opened its log
      const parsed = parseLog(readFileSync(child.logPath, "utf8"));
      for (const line of parsed.lines) {
        expect(line.pid, `a line in ${child.logPath}`).toBe(child.pid);
        expect(inputs.has(line.taskId as TaskId), `task of ${JSON.stringify(line)}`).toBe(true);
      }
      lines.push(...parsed.lines);
      if (parsed.torn !== null) torn++;
    }

    // ── 1. Every task done, with its result and every step in order ─────────────────
    const reg = await openRegistry(path);
    const storedRuns = new Map<string, number>(); // `${taskId} ${ordinal}` → run that stored it
    const storedPid = new Map<string, number>();
    let reclaimedRuns = 0;
    try {
      for (const [id, input] of inputs) {
        const record = await reg.inspect(id);
        expect(record.task.status, `status of task ${input.index}`).toBe("done");
        expect(record.lease).toBeNull();
        reclaimedRuns += record.runs - 1;
        const checkpoint = record.task.checkpoint;
        expect(checkpoint?.value, `result of task ${input.index}`).toEqual({
          Ok: expectedResult(input),
        });
        expect(checkpoint?.finished_at).not.toBeNull();
        const steps = checkpoint?.steps ?? [];
        expect(
          steps.map((step) => [step.name, step.status]),
          `steps of task ${input.index}`,
        ).toEqual(Array.from({ length: input.steps }, (_, i) => [`s${i}`, "ok"]));
        for (const [ordinal, step] of steps.entries()) {
          // The output names the run (and process) that ran the step live and stored it.
          const output = step.output as unknown as StepOutput;
          expect(output.v, `value of step ${ordinal} of task ${input.index}`).toBe(
            stepValue(input.index, ordinal),
          );
          expect(output.run).toBeGreaterThanOrEqual(1);
          expect(output.run).toBeLessThanOrEqual(record.runs);
          // `attempt` is that run, or 0 where a later run replayed the step and recorded it
          // again (spec §5); which of the two is not this test's business.
          expect([output.run, 0], `attempt of step ${ordinal} of task ${input.index}`).toContain(
            step.attempt,
          );
          storedRuns.set(`${id} ${ordinal}`, output.run);
          storedPid.set(`${id} ${ordinal}`, output.pid);
        }
      }
    } finally {
      await reg.close();
    }

    // ── 2. Done exactly once ────────────────────────────────────────────────────────
    // complete() is fenced by the lease, so at most one run completes a task, and its process
    // logs `completed` after storing it. A kill can land between the two: then that task has
    // no line, which costs one kill.
    const completions = new Map<string, number>();
    for (const line of lines) {
      if (line.event === "completed") {
        completions.set(line.taskId, (completions.get(line.taskId) ?? 0) + 1);
      }
    }
    const doubleCompleted = [...completions].filter(([, n]) => n > 1);
    expect(doubleCompleted, "tasks with more than one `completed` line").toEqual([]);
    const unlogged = [...inputs.keys()].filter((id) => !completions.has(id)).length;
    expect(unlogged, "tasks done without a `completed` line").toBeLessThanOrEqual(kills.length);

    // ── 3. A stored step never runs again ───────────────────────────────────────────
    // Ordering lines by clock across processes could false-fail: a process whose lease
    // expired while it was stalled (not killed) may still start a step after another run
    // stored it, which is allowed (its write is then refused). So the check orders runs, not
    // times. A run stores its steps under its lease, and the next run of the task (a higher
    // run number) is only claimed after that lease is gone, so it reads every step stored
    // before it and must replay them. Hence, for each (task, ordinal), with r the run whose
    // result is in the final checkpoint (the run its output names):
    //   - no `exec` line has a run above r: that would be a stored step run again;
    //   - exactly one `exec` line has run r, from the process the stored output names;
    //   - at most one `persisted` line exists, and it is run r's, from that process: a stored
    //     result is never replaced (none if the process died before writing the line);
    //   - every `replayed` line has a run above r and returned run r's stored result.
    // `exec` lines of runs below r are re-executions of steps that had not been stored when
    // their run died: expected, and only counted.
    const violations: string[] = [];
    const byStep = new Map<string, (StepLine | ReplayedLine)[]>();
    for (const line of lines) {
      if (line.event === "completed" || line.event === "reclaimed") continue;
      const key = `${line.taskId} ${line.ordinal}`;
      byStep.set(key, [...(byStep.get(key) ?? []), line]);
    }
    let reExecutions = 0;
    let replays = 0;
    for (const [key, run] of storedRuns) {
      const stepLines = byStep.get(key) ?? [];
      const execs = stepLines.filter((line) => line.event === "exec");
      const persisted = stepLines.filter((line) => line.event === "persisted");
      const replayed = stepLines.filter((line) => line.event === "replayed");
      const pid = storedPid.get(key);
      const later = execs.filter((line) => line.run > run);
      if (later.length > 0) {
        violations.push(`step ${key} stored by run ${run} ran again: ${JSON.stringify(later)}`);
      }
      const own = execs.filter((line) => line.run === run);
      if (own.length !== 1 || own[0]?.pid !== pid) {
        violations.push(`step ${key}: run ${run} (pid ${pid}) logged ${JSON.stringify(own)}`);
      }
      if (persisted.length > 1 || persisted.some((line) => line.run !== run || line.pid !== pid)) {
        violations.push(
          `step ${key} stored by run ${run} (pid ${pid}) but logged ${JSON.stringify(persisted)}`,
        );
      }
      const badReplays = replayed.filter((line) => line.run <= run || line.storedRun !== run);
      if (badReplays.length > 0) {
        violations.push(`step ${key} stored by run ${run}: ${JSON.stringify(badReplays)}`);
      }
      reExecutions += execs.filter((line) => line.run < run).length;
      replays += replayed.length;
    }
    const stray = [...byStep.keys()].filter((key) => !storedRuns.has(key));
    if (stray.length > 0) violations.push(`lines for steps not in any checkpoint: ${stray}`);
    expect(violations).toEqual([]);
    const execs = lines.filter((line) => line.event === "exec").length;
    expect(execs).toBe(totalSteps + reExecutions);

    // ── 4. The file is sound ────────────────────────────────────────────────────────
    expect(integrityCheck(path)).toEqual([{ integrity_check: "ok" }]);

    // ── 5. The chaos was real ───────────────────────────────────────────────────────
    const hits = kills.filter((kill) => kill.leased > 0);
    expect(hits.length, "kills that found tasks leased to the victim").toBeGreaterThan(0);
    expect(reclaimedRuns, "runs taken back after their lease ended").toBeGreaterThan(0);

    // A reclaim of a lease whose owner was still alive: its heartbeat came too late (it
    // waited for the write lock, or for the CPU) and another worker took the task over while
    // it still ran it: the zombie case that the run-number ordering above allows for.
    const killedAt = new Map(kills.map((kill) => [kill.owner, kill.at]));
    const reclaims = lines.filter((line) => line.event === "reclaimed");
    const fromLive = reclaims.filter(
      (line) => !(line.at >= (killedAt.get(line.previousOwner) ?? Number.POSITIVE_INFINITY)),
    ).length;
    console.log(
      `chaos (seed ${seed}): ${TASKS} tasks, ${totalSteps} steps in ${chaosEndedMs} ms; ` +
        `${kills.length} kills (${hits.length} with tasks in flight, ` +
        `${hits.reduce((n, kill) => n + kill.leased, 0)} leases cut), ${children.length} processes; ` +
        `${reclaimedRuns} runs reclaimed (${reclaims.length} logged, ${fromLive} from live workers), ${replays} steps replayed, ${reExecutions} re-executed ` +
        `(${((100 * reExecutions) / totalSteps).toFixed(1)}% of steps), ` +
        `${unlogged} completions unlogged, ${torn} torn log lines; total ${Date.now() - started} ms`,
    );
  });
});
