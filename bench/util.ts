/**
 * Shared pieces of the benchmark: result rows and targets, statistics, temporary folders that
 * are always removed, and child processes that are always killed.
 */
import { type ChildProcessWithoutNullStreams, spawn } from "node:child_process";
import { mkdtempSync, openSync, readSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

export type DurabilityMode = "full" | "normal";

export interface Target {
  /** Which figure the bound applies to: the ratio to the baseline, or the value itself. */
  readonly on: "ratio" | "value";
  readonly op: ">=" | "<=";
  readonly bound: number;
  /** How the table shows it, e.g. `≥ 0.6× raw`. */
  readonly text: string;
}

export interface Row {
  /** W1 … W8. */
  readonly id: string;
  readonly workload: string;
  readonly value: number;
  readonly unit: string;
  /** What the baseline figure is (same unit as `value`), or null when the target is absolute. */
  readonly baseline: number | null;
  readonly baselineName: string | null;
  /** value / baseline (or the median of per-round ratios, see RowInput), or null without a baseline. */
  readonly ratio: number | null;
  readonly target: string;
  /** null: informational row, no target. */
  readonly met: boolean | null;
  readonly durability: DurabilityMode | "n/a";
  readonly note: string;
}

export interface RowInput {
  readonly id: string;
  readonly workload: string;
  readonly value: number;
  readonly unit: string;
  readonly baseline?: { readonly value: number; readonly name: string } | null;
  /**
   * Where rounds pair this project and its baseline (measured back to back), the median of
   * the per-round ratios; otherwise value / baseline.
   */
  readonly ratio?: number;
  readonly target?: Target | null;
  readonly durability: DurabilityMode | "n/a";
  readonly note?: string;
}

export function row(input: RowInput): Row {
  const baseline = input.baseline ?? null;
  const ratio =
    baseline === null || baseline.value === 0
      ? null
      : (input.ratio ?? input.value / baseline.value);
  const target = input.target ?? null;
  let met: boolean | null = null;
  if (target !== null) {
    const figure = target.on === "ratio" ? ratio : input.value;
    met =
      figure !== null &&
      Number.isFinite(figure) &&
      (target.op === ">=" ? figure >= target.bound : figure <= target.bound);
  }
  return {
    id: input.id,
    workload: input.workload,
    value: input.value,
    unit: input.unit,
    baseline: baseline?.value ?? null,
    baselineName: baseline?.name ?? null,
    ratio,
    target: target?.text ?? "(info)",
    met,
    durability: input.durability,
    note: input.note ?? "",
  };
}

/** A row for a workload that could not run: it shows up as missed, with the error. */
export function errorRow(id: string, workload: string, error: unknown): Row {
  const message = error instanceof Error ? (error.stack ?? error.message) : String(error);
  return {
    id,
    workload,
    value: Number.NaN,
    unit: "",
    baseline: null,
    baselineName: null,
    ratio: null,
    target: "(did not run)",
    met: false,
    durability: "n/a",
    note: `error: ${message.split("\n").slice(0, 4).join(" | ")}`,
  };
}

// ── statistics ─────────────────────────────────────────────────────────────────────────

export function sorted(values: readonly number[]): number[] {
  return [...values].sort((a, b) => a - b);
}

/** Nearest-rank percentile, p in [0, 100]. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const s = sorted(values);
  const rank = Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1));
  return s[rank] as number;
}

/** The middle value (the mean of the two middle ones for an even count). */
export function median(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  const s = sorted(values);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1
    ? (s[mid] as number)
    : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
}

export function mean(values: readonly number[]): number {
  if (values.length === 0) return Number.NaN;
  return values.reduce((a, b) => a + b, 0) / values.length;
}

/** Milliseconds since the epoch with sub-ms resolution, comparable across processes. */
export function wallClockMs(): number {
  return performance.timeOrigin + performance.now();
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Let pending I/O callbacks and immediates run (and the GC breathe) between measurements. */
export function settle(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

/** The per-round ratios as the note shows them, e.g. `0.74/0.81/0.77`. */
export function ratios(values: readonly number[]): string {
  return values.map((r) => r.toFixed(2)).join("/");
}

// ── time other processes took ──────────────────────────────────────────────────────────

/**
 * A clock of the milliseconds this thread has spent runnable but waiting for a CPU, or null
 * where the OS does not tell (Linux does: /proc/thread-self/schedstat, second field, ns). On
 * a machine shared with other work that wait is a large, erratic part of wall time
 * (measured here at load 5–9: 0.4–2.9 s of a 1.6–4.2 s `submitMany` round, and the whole of
 * most 5–35 ms event-loop gaps); it is not the measured code's, so figures subtract it.
 * Call it from the thread that created it (the main thread).
 */
export function runQueueClock(): (() => number) | null {
  let fd: number;
  try {
    fd = openSync("/proc/thread-self/schedstat", "r");
  } catch {
    return null;
  }
  const buffer = Buffer.alloc(96);
  // Parsed in place: W8 reads it at every tick of a busy loop, and garbage made there would be
  // collected inside the windows it measures.
  const read = () => {
    const length = readSync(fd, buffer, 0, buffer.length, 0);
    let i = buffer.indexOf(0x20) + 1;
    if (i === 0) return Number.NaN;
    let ns = 0;
    for (; i < length && buffer[i] !== 0x20; i++) ns = ns * 10 + ((buffer[i] as number) - 0x30);
    return ns / 1e6;
  };
  return Number.isFinite(read()) ? read : null;
}

export interface OwnTime {
  /** Elapsed ms. */
  readonly wallMs: number;
  /** Of which the thread waited for a CPU (0 where the OS does not tell). */
  readonly waitMs: number;
  /** wallMs - waitMs: what the measured code took, itself and its I/O. */
  readonly ownMs: number;
}

const mainRunQueue = runQueueClock();

/** Whether `timeOwn` can subtract run-queue waits here (the notes say which figures are whose). */
export const runQueueKnown = mainRunQueue !== null;

/** Time an async body on the main thread: wall time, and that time minus the wait for a CPU. */
export async function timeOwn(body: () => Promise<unknown> | unknown): Promise<OwnTime> {
  const wait0 = mainRunQueue?.() ?? 0;
  const start = performance.now();
  await body();
  const wallMs = performance.now() - start;
  const waitMs = (mainRunQueue?.() ?? 0) - wait0;
  return { wallMs, waitMs, ownMs: wallMs - waitMs };
}

// ── formatting ─────────────────────────────────────────────────────────────────────────

export function fmt(value: number | null, unit = ""): string {
  if (value === null || Number.isNaN(value)) return "—";
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  let text: string;
  if (unit === "B") return fmtBytes(value);
  if (abs >= 1000) text = Math.round(value).toLocaleString("en-US");
  else if (abs >= 100) text = value.toFixed(0);
  else if (abs >= 10) text = value.toFixed(1);
  else if (abs >= 1) text = value.toFixed(2);
  else text = value.toPrecision(2);
  return unit === "" ? text : `${text} ${unit}`;
}

export function fmtBytes(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / 1024 / 1024).toFixed(2)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} B`;
}

export function fmtRatio(ratio: number | null): string {
  if (ratio === null || Number.isNaN(ratio)) return "—";
  if (ratio >= 100) return `${ratio.toFixed(0)}×`;
  if (ratio >= 10) return `${ratio.toFixed(1)}×`;
  // Three decimals, so a ratio just past its bound (1.204 against ≤ 1.2) does not print as met.
  if (ratio >= 0.01) return `${ratio.toFixed(3)}×`;
  return `${ratio.toPrecision(2)}×`;
}

// ── temporary folders ──────────────────────────────────────────────────────────────────

const tempDirs = new Set<string>();

export interface TempDir {
  readonly dir: string;
  /** A path inside the folder. */
  file(name: string): string;
  /** Remove the folder and everything in it. */
  remove(): void;
}

export function tempDir(label: string): TempDir {
  const dir = mkdtempSync(join(tmpdir(), `cruxx-bench-${label}-`));
  tempDirs.add(dir);
  return {
    dir,
    file: (name) => join(dir, name),
    remove: () => {
      rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    },
  };
}

/** Run `body` with a fresh temporary folder that is removed afterwards, whatever happens. */
export async function withTempDir<T>(
  label: string,
  body: (dir: TempDir) => Promise<T>,
): Promise<T> {
  const dir = tempDir(label);
  try {
    return await body(dir);
  } finally {
    dir.remove();
  }
}

// ── child processes ────────────────────────────────────────────────────────────────────

const children = new Set<ChildProcessWithoutNullStreams>();

export interface Child {
  readonly process: ChildProcessWithoutNullStreams;
  /** Resolves when the child prints `ready`. */
  readonly ready: Promise<void>;
  /** Every line the child printed on stdout so far. */
  readonly lines: string[];
  /** Resolves on the next stdout line that satisfies `match`, or rejects if the child exits first. */
  waitForLine(match: (line: string) => boolean): Promise<string>;
  send(line: string): void;
  /** Resolves when the child has exited. */
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null; stderr: string }>;
}

/** `node [nodeArgs] --import tsx script '<config JSON>'`, with a `ready` / stdin line protocol. */
export function startChild(
  script: string,
  config: unknown,
  nodeArgs: readonly string[] = [],
): Child {
  const args = [...nodeArgs, "--import", "tsx", script, JSON.stringify(config)];
  const child = spawn(process.execPath, args, { stdio: ["pipe", "pipe", "pipe"] });
  children.add(child);
  // A line sent as the child exits on its own fails with EPIPE; it had nothing left to read.
  child.stdin.on("error", () => undefined);
  const lines: string[] = [];
  const listeners = new Set<(line: string) => void>();
  let stderr = "";
  let buffered = "";
  child.stdout.setEncoding("utf8");
  child.stderr.setEncoding("utf8");
  child.stderr.on("data", (chunk: string) => {
    stderr += chunk;
  });
  child.stdout.on("data", (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    for (const line of parts) {
      lines.push(line);
      for (const listener of [...listeners]) listener(line);
    }
  });
  const exited = new Promise<{
    code: number | null;
    signal: NodeJS.Signals | null;
    stderr: string;
  }>((resolve) => {
    child.on("close", (code, signal) => {
      children.delete(child);
      resolve({ code, signal, stderr });
    });
  });
  const waitForLine = (match: (line: string) => boolean) =>
    new Promise<string>((resolve, reject) => {
      const seen = lines.find(match);
      if (seen !== undefined) {
        resolve(seen);
        return;
      }
      const listener = (line: string) => {
        if (!match(line)) return;
        listeners.delete(listener);
        resolve(line);
      };
      listeners.add(listener);
      void exited.then(({ code, signal }) => {
        if (!listeners.has(listener)) return;
        listeners.delete(listener);
        const out = lines.join(" / ") || "(nothing)";
        reject(
          new Error(
            `child ${script} exited (${code ?? signal}) before the line; stdout: ${out}; stderr:\n${stderr.trim() || "(nothing)"}`,
          ),
        );
      });
    });
  const ready = waitForLine((line) => line === "ready").then(() => undefined);
  ready.catch(() => undefined);
  return {
    process: child,
    ready,
    lines,
    waitForLine,
    send: (line) => {
      child.stdin.write(`${line}\n`);
    },
    exited,
  };
}

/** Ask a child to stop with `line`; SIGKILL it if it has not exited within `timeoutMs`. */
export async function stopChild(child: Child, line = "stop", timeoutMs = 10_000): Promise<void> {
  if (child.process.exitCode === null && child.process.signalCode === null) child.send(line);
  let timer: NodeJS.Timeout | undefined;
  const killed = new Promise<void>((resolve) => {
    timer = setTimeout(() => {
      child.process.kill("SIGKILL");
      resolve();
    }, timeoutMs);
  });
  await Promise.race([child.exited.then(() => undefined), killed]);
  clearTimeout(timer);
  await child.exited;
}

/** Kill every child still running and remove every temporary folder (exit, Ctrl-C, crash). */
export function cleanUpEverything(): void {
  for (const child of children) child.kill("SIGKILL");
  children.clear();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  tempDirs.clear();
}

/** In a child: call `onLine` for every stdin line. */
export function onStdinLines(onLine: (line: string) => void): void {
  let buffered = "";
  process.stdin.setEncoding("utf8");
  process.stdin.on("data", (chunk: string) => {
    buffered += chunk;
    const parts = buffered.split("\n");
    buffered = parts.pop() ?? "";
    for (const line of parts) onLine(line.trim());
  });
}

export interface BenchContext {
  readonly quick: boolean;
  /** Whether workload `id` (W1 … W8) was asked for: a group skips those that were not. */
  wants(id: string): boolean;
  /** Progress line on stderr (the table goes to stdout). */
  log(message: string): void;
}

/** Time an async body, in ms. */
export async function timeAsync(body: () => Promise<unknown>): Promise<number> {
  const start = performance.now();
  await body();
  return performance.now() - start;
}

/** A logger that says nothing (plainjob logs every job at debug level to the console). */
export const silentLogger = {
  error: () => undefined,
  warn: () => undefined,
  info: () => undefined,
  debug: () => undefined,
};

/** The mean without the `trim` fraction of smallest and of largest values (robust to stalls). */
export function trimmedMean(values: readonly number[], trim = 0.05): number {
  const s = sorted(values);
  const cut = Math.floor(s.length * trim);
  return mean(s.slice(cut, s.length - cut));
}
