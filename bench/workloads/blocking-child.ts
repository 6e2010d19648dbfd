/**
 * The measuring process for W8: `node --single-threaded-gc --import tsx blocking-child.ts
 * '<BlockingChildConfig JSON>'`. It writes the same 64 KiB checkpoint again and again with
 * `registry.checkpoint`, alternating with raw better-sqlite3 writing the same document to a
 * copy of the row and with an idle window as long as the registry's write (the control),
 * records the largest event-loop pause of each, prints
 * `result {BlockingResult JSON}` and exits.
 *
 * A process of its own, so its heap holds only this workload: the benchmark's other workloads
 * leave hundreds of MB of garbage whose collection would otherwise land in these windows.
 */
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

/** One write's largest pause: as the clock saw it, and without the wait for a CPU. */
export interface Pause {
  readonly wall: number;
  readonly own: number;
}

export interface BlockingResult {
  readonly registry: Pause[];
  readonly raw: Pause[];
  /**
   * The control: the same monitor over an idle event loop, for as long as the registry's
   * write before it took. What it records is the machine's (and V8's), not any write's.
   */
  readonly idle: Pause[];
  /** Whether `own` excludes run-queue waits (false where the OS does not report them). */
  readonly runQueueKnown: boolean;
}

const KIND = "blocking";
const runQueue = runQueueClock();

/**
 * Records the largest gap between consecutive setImmediate ticks since the last reset, and
 * the largest gap once the time this thread waited for a CPU inside it is taken out. On a
 * loaded machine the wall gaps are mostly that wait (5–35 ms at load 5–9, for the raw driver's
 * 0.06 ms writes as much as for the registry's); what is left is the thread's own work, its
 * I/O, and its GC.
 */
class LoopMonitor {
  #last = performance.now();
  #lastWait = runQueue?.() ?? 0;
  #wall = 0;
  #own = 0;
  #running = false;

  start(): void {
    this.#running = true;
    this.#last = performance.now();
    this.#lastWait = runQueue?.() ?? 0;
    const tick = () => {
      if (!this.#running) return;
      const wait = runQueue?.() ?? 0;
      const now = performance.now();
      const gap = now - this.#last;
      this.#wall = Math.max(this.#wall, gap);
      this.#own = Math.max(this.#own, gap - (wait - this.#lastWait));
      this.#last = now;
      this.#lastWait = wait;
      setImmediate(tick);
    };
    setImmediate(tick);
  }

  reset(): void {
    this.#wall = 0;
    this.#own = 0;
  }

  get pause(): Pause {
    return { wall: this.#wall, own: this.#own };
  }

  stop(): void {
    this.#running = false;
  }
}

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
    // first scavenges take 5–15 ms), and the registry starts its checkpoint thread.
    for (let i = 0; i < config.warmUp; i++) {
      await registry.checkpoint(id, crux);
      write(id, stored.data);
      await turns(2);
    }
    const result: BlockingResult = {
      registry: [],
      raw: [],
      idle: [],
      runQueueKnown: runQueue !== null,
    };
    for (let i = 0; i < config.writes; i++) {
      await turns(3);
      monitor.reset();
      const start = performance.now();
      await registry.checkpoint(id, crux);
      await turns(3);
      const window = performance.now() - start;
      result.registry.push(monitor.pause);

      monitor.reset();
      const idleUntil = performance.now() + window;
      while (performance.now() < idleUntil) await turns(1);
      result.idle.push(monitor.pause);

      monitor.reset();
      write(id, stored.data);
      await turns(3);
      result.raw.push(monitor.pause);
    }
    return result;
  } finally {
    monitor.stop();
    await registry.close();
    raw.close();
  }
}

const config = JSON.parse(process.argv[2] ?? "{}") as BlockingChildConfig;
const result = await measure(config);
process.stdout.write(`result ${JSON.stringify(result)}\n`, () => process.exit(0));
