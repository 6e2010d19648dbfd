/**
 * Child process for persistence.test.ts, and the deterministic data both sides agree on.
 * Run as `node --import tsx persistence-worker.ts '<PersistenceWorkerConfig JSON>'`.
 *
 * It performs the planned writes, appending one journal line (synchronously) after each write
 * resolves, so the journal lists only writes the registry has acknowledged. Then it dies
 * without calling close():
 * - `exit`: `process.exit(0)` straight after the last awaited write;
 * - `kill`: prints `written`, then keeps submitting (and journaling) more tasks until the
 *   parent kills it with SIGKILL, so the kill can land in the middle of a write.
 */
import { appendFileSync } from "node:fs";
import { pathToFileURL } from "node:url";
import type { Durability } from "../../src/backend/sqlite/index.js";
import type { CruxId } from "../../src/ids.js";
import { openRegistry } from "../../src/open.js";
import { F64, type Json } from "../../src/wire/json.js";
import type { Crux, Step, TaskStatus } from "../../src/wire/schema.js";

export const U64_MAX = 18446744073709551615n;
export const I64_MIN = -9223372036854775808n;
export const PLANNED_TASKS = 9;
const KINDS = ["build", "deploy", "análisis-📊"] as const;
const TIME = "2026-01-02T03:04:05.123456789Z";

export interface PersistenceWorkerConfig {
  readonly path: string;
  /** `undefined`: open with the default durability (`full`). */
  readonly durability?: Durability;
  readonly mode: "exit" | "kill";
  readonly journalPath: string;
}

/** One acknowledged write, as the child journals it. */
export type JournalEntry =
  | { readonly op: "submit"; readonly i: number; readonly id: string }
  | { readonly op: "status"; readonly i: number; readonly status: TaskStatus }
  | { readonly op: "checkpoint"; readonly i: number; readonly n: number }
  | { readonly op: "extra"; readonly j: number; readonly id: string };

export function kindFor(i: number): string {
  return KINDS[i % KINDS.length] as string;
}

/** Varied JSON: nesting, unicode, u64/i64 beyond 2^53, floats, integral floats as F64. */
export function inputFor(i: number): Json {
  switch (i % 5) {
    case 0:
      return {
        i,
        repo: "cruxx",
        nested: { deep: { deeper: [1, [2, [3, { four: 4 }]]] }, empty: {}, none: [] },
        flags: [true, false, null],
      };
    case 1:
      return {
        i,
        text: 'ünïcødé ✓ 中文 ℌ𝔢𝔩𝔩𝔬 👩‍👩‍👧 e\u0301 tab\tnl\nquote" back\\ nul\u0000 \u2028',
        "клю́ч 🔑": "значение",
        "": "empty key",
      };
    case 2:
      return {
        i,
        u64max: U64_MAX,
        i64min: I64_MIN,
        above53: 9007199254740993n,
        list: [U64_MAX, 18446744073709551557n, -1, 0],
      };
    case 3:
      return {
        i,
        floats: [0.1, -2.5, 5e-324, 1e-7, 123456.789],
        // Every float from 2^53 up is integral, so it too reads back as F64.
        integralFloats: [
          new F64(1),
          new F64(-0),
          new F64(-3),
          new F64(1e21),
          new F64(6.02214076e23),
          new F64(1.7976931348623157e308),
        ],
      };
    default:
      return [i, "top-level array", U64_MAX, { mixed: [null, 0.5, "x"] }];
  }
}

/** A valid CruxId fixed by (i, n), so the parent can rebuild the exact checkpoint. */
function cruxIdFor(i: number, n: number, child: number): CruxId {
  return `cruxx_01HZ${String(i * 1000 + n * 10 + child).padStart(22, "0")}` as CruxId;
}

function stepFor(i: number, n: number, ordinal: number): Step {
  return {
    name: ordinal === 0 ? "fetch" : "draft ✍",
    kind: ordinal === 0 ? "plain" : "delegation",
    status: "ok",
    confidence: 0.75,
    started_at: TIME,
    duration_ms: 5 + ordinal,
    input_hash: 18446744073709551557n - BigInt(ordinal), // u64 far above 2^53
    content_hash: ordinal === 0 ? null : 10308880778165991037n,
    output: { i, n, ordinal, big: U64_MAX, text: "résultat" },
    error: null,
    attempt: 1,
    events: ordinal === 0 ? [] : [{ retry: 1 }, U64_MAX, new F64(2)],
    metadata: ordinal === 0 ? {} : { model: "m-1", ключ: [1, 2.5] },
  };
}

/** The n-th checkpoint written for task i: two steps with u64 hashes and a failed child. */
export function cruxFor(i: number, n: number): Crux {
  const child: Crux = {
    id: cruxIdFor(i, n, 1),
    agent: "parser",
    value: {
      Err: {
        kind: "delegation",
        to: "parser",
        source: { kind: "budget_exceeded", budget_kind: "tokens", limit: U64_MAX, actual: 100 },
      },
    },
    steps: [
      {
        ...stepFor(i, n, 0),
        status: "err",
        output: null,
        error: "network error",
        input_hash: 6231848832354474281n,
      },
    ],
    children: [],
    started_at: TIME,
    finished_at: "2026-01-02T03:04:06Z",
  };
  return {
    id: cruxIdFor(i, n, 0),
    agent: `planner-${i}-${n}`,
    value: { Ok: n % 2 === 0 ? null : { answer: 42, big: U64_MAX } },
    steps: [stepFor(i, n, 0), stepFor(i, n, 1)],
    children: [child],
    started_at: TIME,
    finished_at: null,
  };
}

/** Planned status updates for task i, in order. */
export function statusesFor(i: number): TaskStatus[] {
  return i % 3 === 0 ? ["running", "done"] : i % 3 === 1 ? ["running"] : [];
}

/** Planned checkpoint count for task i. */
export function checkpointsFor(i: number): number {
  return i % 2 === 0 ? 2 : i % 4 === 1 ? 1 : 0;
}

async function main(config: PersistenceWorkerConfig): Promise<void> {
  const reg = await openRegistry(
    config.path,
    config.durability === undefined ? {} : { durability: config.durability },
  );
  const journal = (entry: JournalEntry): void => {
    appendFileSync(config.journalPath, `${JSON.stringify(entry)}\n`);
  };
  const ids: string[] = [];
  for (let i = 0; i < PLANNED_TASKS; i++) {
    const id = await reg.submit(kindFor(i), inputFor(i));
    ids.push(id);
    journal({ op: "submit", i, id });
  }
  for (let i = 0; i < PLANNED_TASKS; i++) {
    const id = ids[i] as string;
    for (const status of statusesFor(i)) {
      await reg.updateStatus(id, status);
      journal({ op: "status", i, status });
    }
    for (let n = 1; n <= checkpointsFor(i); n++) {
      await reg.checkpoint(id, cruxFor(i, n));
      journal({ op: "checkpoint", i, n });
    }
  }
  if (config.mode === "exit") {
    process.exit(0); // no close(): the process just ends after its last acknowledged write
  }
  process.stdout.write("written\n");
  for (let j = 0; j < 100_000; j++) {
    const id = await reg.submit("extra", { j });
    journal({ op: "extra", j, id });
  }
  process.stderr.write("not killed after 100000 extra writes\n");
  process.exit(3);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const configText = process.argv[2];
  if (configText === undefined) {
    process.stderr.write("usage: persistence-worker.ts '<PersistenceWorkerConfig JSON>'\n");
    process.exit(2);
  }
  await main(JSON.parse(configText) as PersistenceWorkerConfig);
}
