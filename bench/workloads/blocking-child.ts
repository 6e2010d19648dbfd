/**
 * The measuring process for W8: `node --single-threaded-gc --import tsx blocking-child.ts
 * '<BlockingChildConfig JSON>'`. It writes the same 64 KiB checkpoint again and again with
 * `registry.checkpoint`, alternating with raw better-sqlite3 writing the same document to a
 * copy of the row and with an idle window as long as the registry's write (the control),
 * records the largest event-loop pause of each, prints `result {BlockingResult JSON}` and
 * exits.
 *
 * A process of its own, so its heap holds only this workload: the benchmark's other workloads
 * leave hundreds of MB of garbage whose collection would otherwise land in these windows.
 */
import { PerformanceObserver } from "node:perf_hooks";
import { type Durability, openRegistry } from "../../src/index.js";
import { createRegistryFile, insertSql, openRaw, rawDocumentWriter, readRow } from "../raw.js";
import { runQueueClock } from "../util.js";
import { bigCrux } from "./blocking.js";

export interface BlockingChildConfig {
  readonly dir: string;
  readonly durability: Durability;
  readonly bytes: number;
  readonly warmUp: number;
  readonly writes: number;
}

/** One window's largest pause: as the clock saw it, and without the wait for a CPU. */
export interface Pause {
  readonly wall: number;
  readonly own: number;
}

export interface BlockingResult {
  readonly registry: Pause[];
  readonly raw: Pause[];
  /**
   * The control: the same monitor over an idle event loop, for as long as the registry's
   * write before it took. What it records is the machine's, not any write's.
   */
  readonly idle: Pause[];
  /** Garbage collections that ran outside the registry's windows and were counted for it. */
  readonly collectionsMoved: number;
  /** Whether `own` excludes run-queue waits (false where the OS does not report them). */
  readonly runQueueKnown: boolean;
}

type WindowKind = "registry" | "raw" | "idle";

interface Gap {
  readonly start: number;
  readonly end: number;
  readonly wall: number;
  readonly own: number;
}

interface Window {
  readonly kind: WindowKind;
  readonly start: number;
  end: number;
  /** The largest gaps under LOGGED_MS (those are not logged), updated in place. */
  readonly small: { wall: number; own: number };
}

const KIND = "blocking";
/** Gaps at least this long (ms) are logged one by one; shorter ones only as a window's maximum. */
const LOGGED_MS = 0.05;
const runQueue = runQueueClock();

/**
 * Logs the gaps between consecutive setImmediate ticks, each also without the time this
 * thread waited for a CPU inside it. On a loaded machine the wall gaps are mostly that wait
 * (5–35 ms at load 5–9, for the raw driver's 0.06 ms writes as much as for the registry's);
 * what is left is the thread's own work, its I/O and its GC, and stalls of the whole VM.
 */
class LoopMonitor {
  readonly gaps: Gap[] = [];
  readonly windows: Window[] = [];
  #last = performance.now();
  #lastWait = runQueue?.() ?? 0;
  #running = false;

  start(): void {
    this.#running = true;
    this.#last = performance.now();
    this.#lastWait = runQueue?.() ?? 0;
    const tick = () => {
      if (!this.#running) return;
      const wait = runQueue?.() ?? 0;
      const now = performance.now();
      const wall = now - this.#last;
      const own = wall - (wait - this.#lastWait);
      if (wall >= LOGGED_MS) this.gaps.push({ start: this.#last, end: now, wall, own });
      else {
        const window = this.windows.at(-1);
        if (window !== undefined && window.end === Number.POSITIVE_INFINITY) {
          window.small.wall = Math.max(window.small.wall, wall);
          window.small.own = Math.max(window.small.own, own);
        }
      }
      this.#last = now;
      this.#lastWait = wait;
      setImmediate(tick);
    };
    setImmediate(tick);
  }

  /** Gaps that end from now on, until `close()`, belong to a window of `kind`. */
  open(kind: WindowKind): void {
    this.windows.push({
      kind,
      start: performance.now(),
      end: Number.POSITIVE_INFINITY,
      small: { wall: 0, own: 0 },
    });
  }

  close(): void {
    const window = this.windows.at(-1);
    if (window !== undefined) window.end = performance.now();
  }

  stop(): void {
    this.#running = false;
  }
}

/** Every garbage collection's time span, as V8 reports it (after the fact). */
function observeCollections(): { readonly spans: { start: number; end: number }[]; stop(): void } {
  const spans: { start: number; end: number }[] = [];
  const observer = new PerformanceObserver((list) => {
    for (const entry of list.getEntries()) {
      spans.push({ start: entry.startTime, end: entry.startTime + entry.duration });
    }
  });
  observer.observe({ entryTypes: ["gc"] });
  return { spans, stop: () => observer.disconnect() };
}

/**
 * Each window's largest pause. A gap in which V8 collected garbage counts for the registry
 * write before it, wherever it fell: the registry allocates most of the garbage (~500 KiB of
 * young objects a write, measured, against ~80 KiB for the raw write, the document it reads
 * back), and V8 runs a scavenge it decided on during a write as a task of its own, which
 * mostly ran in the next window or between windows (here 22 of 40 in the idle control, 3 in
 * raw windows, 15 in the registry's own).
 */
function pauses(
  monitor: LoopMonitor,
  collections: readonly { start: number; end: number }[],
): Pick<BlockingResult, "registry" | "raw" | "idle" | "collectionsMoved"> {
  const { windows } = monitor;
  const worst = windows.map((w) => ({ ...w.small }));
  let moved = 0;
  let w = 0;
  let lastRegistry = -1;
  for (const gap of monitor.gaps) {
    // Windows follow one another; advance to the last one opened before this gap ended.
    while (w + 1 < windows.length && (windows[w + 1] as Window).start < gap.end) {
      w++;
      if ((windows[w] as Window).kind === "registry") lastRegistry = w;
    }
    const window = windows[w];
    if (window === undefined || window.start >= gap.end) continue; // before the first window
    const collected = collections.some((c) => c.end > gap.start && c.start < gap.end);
    let owner = gap.end <= window.end ? w : -1;
    if (collected && lastRegistry >= 0 && owner !== lastRegistry) {
      owner = lastRegistry;
      moved++;
    }
    const pause = worst[owner];
    if (pause === undefined) continue; // between windows, and no collection in it
    pause.wall = Math.max(pause.wall, gap.wall);
    pause.own = Math.max(pause.own, gap.own);
  }
  const of = (kind: WindowKind) => worst.filter((_, i) => (windows[i] as Window).kind === kind);
  return { registry: of("registry"), raw: of("raw"), idle: of("idle"), collectionsMoved: moved };
}

/** Let the loop spin idle for `ms`, making no garbage of its own on the way. */
const idleFor = (ms: number) =>
  new Promise<void>((resolve) => {
    const until = performance.now() + ms;
    const spin = () => (performance.now() < until ? setImmediate(spin) : resolve());
    spin();
  });

const turns = async (n: number) => {
  for (let i = 0; i < n; i++) await new Promise((resolve) => setImmediate(resolve));
};

async function measure(config: BlockingChildConfig): Promise<BlockingResult> {
  const { dir, durability } = config;
  const crux = bigCrux(config.bytes);
  const registry = await openRegistry(`${dir}/registry-${durability}.db`, { durability });
  const rawPath = `${dir}/raw-${durability}.db`;
  await createRegistryFile(rawPath, durability);
  const raw = openRaw(rawPath, durability);
  const monitor = new LoopMonitor();
  const collections = observeCollections();
  try {
    const id = await registry.submit(KIND, { n: 1 });
    await registry.checkpoint(id, crux);
    // The raw baseline writes the very document the registry stored, to a copy of its row.
    const reader = openRaw(`${dir}/registry-${durability}.db`, durability);
    const stored = readRow(reader, id);
    reader.close();
    raw.prepare(insertSql(stored)).run(...Object.values(stored));
    const write = rawDocumentWriter(raw);

    monitor.start();
    // Warm-up: V8 optimises both paths and sizes its young generation (a fresh process's
    // first scavenges take 5–15 ms).
    for (let i = 0; i < config.warmUp; i++) {
      await registry.checkpoint(id, crux);
      write(id, stored.data);
      await turns(2);
    }
    for (let i = 0; i < config.writes; i++) {
      await turns(3);
      monitor.open("registry");
      const start = performance.now();
      await registry.checkpoint(id, crux);
      await turns(3);
      const took = performance.now() - start;
      monitor.close();

      monitor.open("idle");
      await idleFor(took);
      monitor.close();

      monitor.open("raw");
      write(id, stored.data);
      await turns(3);
      monitor.close();
    }
    monitor.stop();
    await new Promise((resolve) => setTimeout(resolve, 100)); // V8 reports collections late
    return { ...pauses(monitor, collections.spans), runQueueKnown: runQueue !== null };
  } finally {
    monitor.stop();
    collections.stop();
    await registry.close();
    raw.close();
  }
}

const config = JSON.parse(process.argv[2] ?? "{}") as BlockingChildConfig;
const result = await measure(config);
process.stdout.write(`result ${JSON.stringify(result)}\n`, () => process.exit(0));
