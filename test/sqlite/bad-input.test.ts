/**
 * Bad input against a registry on a real SQLite file: every row must be refused with the
 * right RegistryError, and nothing may be written or damaged. Each row runs on its own copy of
 * a prepared database (three tasks, one with a checkpoint); the `tasks` table is read with a
 * separate better-sqlite3 connection before and after, and every file under the row's folder
 * (database, `-wal`, `-shm`, anything else) is hashed before and after, once every
 * connection the row opened is closed.
 */
import { createHash } from "node:crypto";
import {
  copyFileSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { beforeAll, describe, expect, it } from "vitest";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import {
  ClosedError,
  type ErrorCode,
  hasErrorCode,
  isRegistryError,
  NotFoundError,
  ReadOnlyError,
  RegistryError,
  SchemaVersionError,
  SerializationError,
  StorageError,
  ValidationError,
} from "../../src/errors.js";
import { newTaskId, type TaskId } from "../../src/ids.js";
import { type OpenRegistryOptions, openRegistry } from "../../src/open.js";
import { TaskRegistry } from "../../src/registry.js";
import { F64 } from "../../src/wire/json.js";
import type { Crux, TaskStatus } from "../../src/wire/schema.js";
import { makeCrux } from "../support/crux.js";

// ---------------------------------------------------------------------------------------
// The prepared database and the per-row fixture

interface Ids {
  /** pending `build` task, input `{"repo":"cruxx","n":[1,2,3]}` */
  readonly plain: TaskId;
  /** pending `analyze` task with one checkpoint (attempts 1) */
  readonly checkpointed: TaskId;
  /** running `deploy` task */
  readonly running: TaskId;
  /** well-formed, never submitted */
  readonly missing: TaskId;
}

let template: string;
let ids: Ids;

beforeAll(async () => {
  template = join(mkdtempSync(join(tmpdir(), "cruxx-bad-input-template-")), "registry.db");
  const reg = await openRegistry(template);
  const plain = await reg.submit("build", { repo: "cruxx", n: [1, 2, 3] });
  const checkpointed = await reg.submit("analyze", "input");
  await reg.checkpoint(checkpointed, makeCrux());
  const running = await reg.submit("deploy", null);
  await reg.updateStatus(running, "running");
  await reg.close();
  ids = { plain, checkpointed, running, missing: newTaskId() };
  // Closing the last connection checkpoints the WAL and removes the side files.
  expect(readdirSync(join(template, ".."))).toEqual(["registry.db"]);
});

interface Closeable {
  close(): unknown;
}

class Fixture {
  /** Folder holding every file the row may touch; all of it is hashed before and after. */
  readonly root = mkdtempSync(join(tmpdir(), "cruxx-bad-input-"));
  /** A copy of the prepared database. */
  readonly path = join(this.root, "registry.db");
  /** The file the row opens: the prepared database unless `setup` points elsewhere. */
  target = this.path;
  readonly ids = ids;
  readonly #open: Closeable[] = [];
  /** Run after the action, before the files are compared (e.g. close the row's own handles). */
  readonly cleanup: (() => void)[] = [];

  constructor() {
    copyFileSync(template, this.path);
  }

  /** Open a registry on `target`; closed after the action. */
  async open(options?: OpenRegistryOptions): Promise<TaskRegistry> {
    return this.track(await openRegistry(this.target, options));
  }

  track<T extends Closeable>(handle: T): T {
    this.#open.push(handle);
    return handle;
  }

  /** Run `fn` on a plain better-sqlite3 connection to `file`, then close it. */
  sql(fn: (db: Database.Database) => void, file = this.path): void {
    const db = new Database(file);
    try {
      fn(db);
    } finally {
      db.close();
    }
  }

  /** Overwrite a task's stored document behind the registry's back. */
  corrupt(id: TaskId, data: unknown): void {
    this.sql((db) => {
      expect(db.prepare("update tasks set data = ? where id = ?").run(data, id).changes).toBe(1);
    });
  }

  async closeAll(): Promise<void> {
    for (const handle of this.#open.splice(0)) await handle.close();
    for (const fn of this.cleanup.splice(0)) fn();
  }
}

/** Every row of `tasks`, read through a connection of our own (or why it cannot be read). */
function tasksTable(file: string): unknown {
  if (!existsSync(file) || statSync(file).isDirectory()) return "<no database file>";
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: true });
    return db.prepare("select * from tasks order by rowid").all();
  } catch (error) {
    return `<unreadable: ${(error as { code?: string }).code ?? (error as Error).message}>`;
  } finally {
    db?.close();
  }
}

const SIDE_FILE = /-(wal|shm|journal)$/;

/** sha256 of every file under `dir` (recursively), keyed by relative path. */
function filesUnder(dir: string, ignoreSideFiles: boolean): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string): void => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const relPath = rel === "" ? name : `${rel}/${name}`;
      const full = join(dir, relPath);
      if (statSync(full).isDirectory()) {
        out[`${relPath}/`] = "<dir>";
        walk(relPath);
      } else if (!(ignoreSideFiles && SIDE_FILE.test(name))) {
        out[relPath] = createHash("sha256").update(readFileSync(full)).digest("hex");
      }
    }
  };
  walk("");
  return out;
}

// ---------------------------------------------------------------------------------------
// Rows

type ErrorClass = abstract new (...args: never[]) => RegistryError;

interface Row {
  readonly name: string;
  readonly code: ErrorCode;
  readonly type: ErrorClass;
  /** `ValidationError.path`; required for VALIDATION rows. */
  readonly path?: string;
  /** Exact message, or a pattern it must match. */
  readonly message?: string | RegExp | ((f: Fixture) => string);
  /** Prepare the files before the "before" snapshot (e.g. corrupt a row, write a foreign file). */
  readonly setup?: (f: Fixture) => void;
  /** The bad call; its promise must reject (a synchronous throw counts too). */
  readonly act: (f: Fixture) => unknown;
  /** Extra assertions on the error. */
  readonly check?: (error: RegistryError, f: Fixture) => void;
  /**
   * SQLite itself leaves empty `-wal`/`-shm` files behind a read-only connection to a WAL
   * database (it may not delete them); compare everything else.
   */
  readonly readOnlySideFiles?: true;
}

/** Pass a value the types forbid, as a JavaScript caller could. */
const bad = <T>(value: unknown): T => value as T;

const ULID = "01ARZ3NDEKTSV4RRFFQ69G5FAV";

const BAD_IDS: readonly (readonly [string, unknown])[] = [
  ["empty string", ""],
  ["bare prefix", "task_"],
  ["lowercase ULID", `task_${ULID.toLowerCase()}`],
  ["crux prefix", `cruxx_${ULID}`],
  ["27-character ULID", `task_${ULID}0`],
  ["25-character ULID", `task_${ULID.slice(1)}`],
  ["ULID with a U (not Crockford)", `task_${ULID.slice(0, 25)}U`],
  ["ULID past 48 bits of time", `task_8${ULID.slice(1)}`],
  ["trailing newline", `task_${ULID}\n`],
  ["number", 42],
  ["null", null],
  ["undefined", undefined],
  ["object with toString", { toString: () => `task_${ULID}` }],
];

const ID_OPS: readonly (readonly [string, (r: TaskRegistry, id: string) => Promise<unknown>])[] = [
  ["get", (r, id) => r.get(id)],
  ["updateStatus", (r, id) => r.updateStatus(id, "done")],
  ["checkpoint", (r, id) => r.checkpoint(id, makeCrux())],
  ["loadCheckpoint", (r, id) => r.loadCheckpoint(id)],
];

const idRows: Row[] = ID_OPS.flatMap(([op, call]) =>
  BAD_IDS.map(
    ([what, id]): Row => ({
      name: `${op} with a bad id: ${what}`,
      code: "VALIDATION",
      type: ValidationError,
      path: "$.id",
      act: async (f) => call(await f.open(), bad(id)),
    }),
  ),
);

const statusRows: Row[] = [
  ["PENDING", "PENDING"],
  ["empty string", ""],
  ["number", 3],
  ["undefined", undefined],
  ["null", null],
  ["String object", new String("done")],
].map(
  ([what, status]): Row => ({
    name: `updateStatus with a bad status: ${String(what)}`,
    code: "VALIDATION",
    type: ValidationError,
    path: "$.status",
    act: async (f) => (await f.open()).updateStatus(f.ids.plain, bad<TaskStatus>(status)),
  }),
);

const notFoundRows: Row[] = ID_OPS.map(
  ([op, call]): Row => ({
    name: `${op} on a well-formed missing id`,
    code: "NOT_FOUND",
    type: NotFoundError,
    message: (f) => `task not found: ${f.ids.missing}`,
    act: async (f) => call(await f.open(), f.ids.missing),
    check: (error, f) => expect((error as NotFoundError).taskId).toBe(f.ids.missing),
  }),
);

class Point {
  constructor(
    readonly x: number,
    readonly y: number,
  ) {}
}

function cycle(): unknown {
  const root: { a: { b: unknown[] } } = { a: { b: [] } };
  root.a.b.push(root);
  return root;
}

function nested(depth: number): unknown {
  let value: unknown = 1;
  for (let i = 0; i < depth; i++) value = [value];
  return value;
}

const NON_JSON_INPUTS: readonly (readonly [string, () => unknown, string])[] = [
  ["undefined", () => undefined, "$.input"],
  ["a function", () => () => 1, "$.input"],
  ["a symbol", () => Symbol("s"), "$.input"],
  ["an object holding undefined", () => ({ a: undefined }), "$.input.a"],
  ["an array holding undefined", () => ({ a: [1, undefined] }), "$.input.a[1]"],
  // biome-ignore lint/suspicious/noSparseArray: a hole is the bad input under test
  ["a sparse array", () => [1, , 3], "$.input[1]"],
  ["a cycle", cycle, "$.input.a.b[0]"],
  ["NaN", () => Number.NaN, "$.input"],
  ["NaN inside an object", () => ({ x: { y: Number.NaN } }), "$.input.x.y"],
  ["Infinity", () => ({ n: [0, Number.POSITIVE_INFINITY] }), "$.input.n[1]"],
  ["-Infinity", () => Number.NEGATIVE_INFINITY, "$.input"],
  ["F64(NaN)", () => new F64(Number.NaN), "$.input"],
  ["a BigInt of 2^64", () => ({ big: 2n ** 64n }), "$.input.big"],
  ["a BigInt below -2^63", () => -(2n ** 63n) - 1n, "$.input"],
  ["a Date", () => ({ when: new Date(0) }), "$.input.when"],
  ["a Map", () => new Map([["a", 1]]), "$.input"],
  ["a Set", () => ({ s: new Set([1]) }), "$.input.s"],
  ["a class instance", () => [new Point(1, 2)], "$.input[0]"],
  ["a String object", () => new String("x"), "$.input"],
  ["a symbol key", () => ({ [Symbol("k")]: 1 }), "$.input"],
  ["a lone surrogate", () => ({ s: "ok\uD800" }), "$.input.s"],
  ["NaN under a non-identifier key", () => ({ "a b": Number.NaN }), '$.input["a b"]'],
  ["nesting deeper than 512", () => nested(600), `$.input${"[0]".repeat(511)}`],
  // The task document around the input is level 1 of the 512 the reader allows.
  ["nesting 512 deep", () => nested(512), `$.input${"[0]".repeat(511)}`],
];

const submitRows: Row[] = [
  ...NON_JSON_INPUTS.map(
    ([what, input, path]): Row => ({
      name: `submit with non-JSON input: ${what}`,
      code: "VALIDATION",
      type: ValidationError,
      path,
      act: async (f) => (await f.open()).submit("build", input()),
    }),
  ),
  {
    name: "submit with 2 KB of input over maxInputBytes 1024",
    code: "VALIDATION",
    type: ValidationError,
    path: "$.input",
    act: async (f) => (await f.open({ maxInputBytes: 1024 })).submit("build", "x".repeat(2048)),
  },
  {
    name: "submit with input under 1024 characters but over 1024 UTF-8 bytes",
    code: "VALIDATION",
    type: ValidationError,
    path: "$.input",
    act: async (f) => (await f.open({ maxInputBytes: 1024 })).submit("build", "€".repeat(400)),
  },
  ...(
    [
      ["empty", ""],
      ["a number", 42],
      ["null", null],
      ["undefined", undefined],
      ["300 characters", "k".repeat(300)],
      // Expected: a kind Rust's String cannot hold (and that the writer's own JSON rules
      // refuse inside `input`) is refused too.
      ["a lone surrogate", "build\uD800"],
    ] as const
  ).map(
    ([what, kind]): Row => ({
      name: `submit with a bad kind: ${what}`,
      code: "VALIDATION",
      type: ValidationError,
      path: "$.kind",
      act: async (f) => (await f.open()).submit(bad(kind), { ok: true }),
    }),
  ),
];

const pendingRows: Row[] = [
  {
    name: "pending with a non-string kind",
    code: "VALIDATION",
    type: ValidationError,
    path: "$.kind",
    act: async (f) => (await f.open()).pending(bad(42)),
  },
  ...([0, -1, 1.5, Number.NaN, "10"] as const).map(
    (limit): Row => ({
      name: `pending with limit ${JSON.stringify(limit) ?? String(limit)}`,
      code: "VALIDATION",
      type: ValidationError,
      path: "$.limit",
      act: async (f) => (await f.open()).pending("build", { limit: bad(limit) }),
    }),
  ),
];

type Loose = Record<string, unknown>;

/** makeCrux() with one change, made on a plain mutable copy. */
function crux(edit: (c: Loose, step: Loose) => void): Crux {
  const c = structuredClone(makeCrux()) as unknown as Loose & { steps: Loose[] };
  edit(c, c.steps[0] as Loose);
  return c as unknown as Crux;
}

const MALFORMED_CRUX: readonly (readonly [string, () => unknown, string])[] = [
  ["null", () => null, "$.checkpoint"],
  ["a string", () => "crux", "$.checkpoint"],
  [
    "missing agent",
    () =>
      crux((c) => {
        delete c.agent;
      }),
    "$.checkpoint.agent",
  ],
  [
    "missing steps",
    () =>
      crux((c) => {
        delete c.steps;
      }),
    "$.checkpoint.steps",
  ],
  ["a task id as crux id", () => crux((c) => (c.id = `task_${ULID}`)), "$.checkpoint.id"],
  ["step kind Plain", () => crux((_, s) => (s.kind = "Plain")), "$.checkpoint.steps[0].kind"],
  ["step status done", () => crux((_, s) => (s.status = "done")), "$.checkpoint.steps[0].status"],
  [
    "confidence NaN",
    () => crux((_, s) => (s.confidence = Number.NaN)),
    "$.checkpoint.steps[0].confidence",
  ],
  [
    "confidence as a string",
    () => crux((_, s) => (s.confidence = "1.0")),
    "$.checkpoint.steps[0].confidence",
  ],
  // Expected: finite as f64 but infinite as f32 has no serde_json form; refused as VALIDATION
  // (not a RangeError from the writer).
  [
    "confidence 1e39 (overflows f32)",
    () => crux((_, s) => (s.confidence = 1e39)),
    "$.checkpoint.steps[0].confidence",
  ],
  [
    "started_at without T and Z",
    () => crux((c) => (c.started_at = "2024-01-01 00:00:00")),
    "$.checkpoint.started_at",
  ],
  [
    "started_at with an offset",
    () => crux((c) => (c.started_at = "2024-01-01T00:00:00+01:00")),
    "$.checkpoint.started_at",
  ],
  [
    "step started_at as a Date",
    () => crux((_, s) => (s.started_at = new Date(0))),
    "$.checkpoint.steps[0].started_at",
  ],
  // Expected: chrono (the Rust side) refuses a day that does not exist.
  [
    "finished_at on 29 February of a common year",
    () => crux((c) => (c.finished_at = "2023-02-29T00:00:00Z")),
    "$.checkpoint.finished_at",
  ],
  [
    "input_hash negative",
    () => crux((_, s) => (s.input_hash = -1n)),
    "$.checkpoint.steps[0].input_hash",
  ],
  [
    "input_hash 2^64",
    () => crux((_, s) => (s.input_hash = 2n ** 64n)),
    "$.checkpoint.steps[0].input_hash",
  ],
  [
    "input_hash fractional",
    () => crux((_, s) => (s.input_hash = 1.5)),
    "$.checkpoint.steps[0].input_hash",
  ],
  [
    "duration_ms negative",
    () => crux((_, s) => (s.duration_ms = -5)),
    "$.checkpoint.steps[0].duration_ms",
  ],
  ["attempt 2^32", () => crux((_, s) => (s.attempt = 2 ** 32)), "$.checkpoint.steps[0].attempt"],
  [
    'value {"Ok":1,"Err":…}',
    () => crux((c) => (c.value = bad({ Ok: 1, Err: { kind: "cancelled", reason: "x" } }))),
    "$.checkpoint.value",
  ],
  ["value {}", () => crux((c) => (c.value = bad({}))), "$.checkpoint.value"],
  ['value {"ok":1}', () => crux((c) => (c.value = bad({ ok: 1 }))), "$.checkpoint.value"],
  [
    "value Err of an unknown kind",
    () => crux((c) => (c.value = bad({ Err: { kind: "exploded" } }))),
    "$.checkpoint.value",
  ],
  [
    "value Ok holding a Map",
    () => crux((c) => (c.value = bad({ Ok: new Map() }))),
    "$.checkpoint.value.Ok",
  ],
  [
    "step output NaN",
    () => crux((_, s) => (s.output = { score: Number.NaN })),
    "$.checkpoint.steps[0].output.score",
  ],
  [
    "step output missing",
    () =>
      crux((_, s) => {
        delete s.output;
      }),
    "$.checkpoint.steps[0].output",
  ],
  [
    "step events holding a function",
    () => crux((_, s) => (s.events = [() => 1])),
    "$.checkpoint.steps[0].events[0]",
  ],
  [
    "step metadata holding undefined",
    () => crux((_, s) => (s.metadata = { a: undefined })),
    "$.checkpoint.steps[0].metadata.a",
  ],
  [
    "a child missing its agent",
    () =>
      crux((c) => {
        const child = structuredClone(makeCrux()) as unknown as Loose;
        delete child.agent;
        c.children = [child];
      }),
    "$.checkpoint.children[0].agent",
  ],
];

const checkpointRows: Row[] = MALFORMED_CRUX.map(
  ([what, value, path]): Row => ({
    name: `checkpoint with a malformed Crux: ${what}`,
    code: "VALIDATION",
    type: ValidationError,
    path,
    // On the task that already has a checkpoint: it must stay as it was, attempts included.
    act: async (f) => (await f.open()).checkpoint(f.ids.checkpointed, bad(value())),
  }),
);

/** A stored document the registry wrote, for corrupting. */
function storedDocument(f: Fixture, id: TaskId): string {
  let data = "";
  f.sql((db) => {
    data = (db.prepare("select data from tasks where id = ?").get(id) as { data: string }).data;
  });
  return data;
}

const CORRUPTIONS: readonly (readonly [string, (f: Fixture) => unknown])[] = [
  ["garbage", () => "not json at all"],
  ["an empty document", () => ""],
  ["truncated JSON", (f) => storedDocument(f, f.ids.plain).slice(0, 40)],
  [
    "valid JSON with status PENDING",
    (f) => storedDocument(f, f.ids.plain).replace('"pending"', '"PENDING"'),
  ],
  [
    "valid JSON with attempts -1",
    (f) => storedDocument(f, f.ids.plain).replace('"attempts":0', '"attempts":-1'),
  ],
  ["JSON nested 1000 deep", () => `${"[".repeat(1000)}${"]".repeat(1000)}`],
  ["a JSON array", () => "[1,2,3]"],
  // Expected: a BLOB where the document should be is a SerializationError, not a TypeError.
  ["a BLOB holding the document", (f) => Buffer.from(storedDocument(f, f.ids.plain))],
];

const CORRUPT_OPS: readonly (readonly [
  string,
  (r: TaskRegistry, id: TaskId) => Promise<unknown>,
])[] = [
  ["get", (r, id) => r.get(id)],
  ["updateStatus", (r, id) => r.updateStatus(id, "done")],
  ["checkpoint", (r, id) => r.checkpoint(id, makeCrux())],
  // pending() skips and quarantines such a row instead: test/sqlite/quarantine.test.ts.
];

const corruptRows: Row[] = [
  ...CORRUPT_OPS.flatMap(([op, call]) =>
    CORRUPTIONS.map(
      ([what, data]): Row => ({
        name: `${op} on a stored row corrupted to ${what}`,
        code: "SERIALIZATION",
        type: SerializationError,
        message: /^serialization error: /,
        setup: (f) => f.corrupt(f.ids.plain, data(f)),
        act: async (f) => call(await f.open(), f.ids.plain),
      }),
    ),
  ),
  {
    name: "loadCheckpoint on a stored row whose checkpoint is malformed",
    code: "SERIALIZATION",
    type: SerializationError,
    message: /^serialization error: .*\$\.checkpoint\.steps\[0\]\.kind/,
    setup: (f) =>
      f.corrupt(
        f.ids.checkpointed,
        storedDocument(f, f.ids.checkpointed).replace('"kind":"plain"', '"kind":"Plain"'),
      ),
    act: async (f) => (await f.open()).loadCheckpoint(f.ids.checkpointed),
  },
];

/** 4 KB of deterministic noise (mulberry32). */
function noise(bytes: number, seed = 0x5eed): Buffer {
  const out = Buffer.alloc(bytes);
  let a = seed;
  for (let i = 0; i < bytes; i++) {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    out[i] = ((t ^ (t >>> 14)) >>> 0) & 0xff;
  }
  return out;
}

/** The driver's own error is kept as the cause. */
function driverCause(code?: string): (error: RegistryError) => void {
  return (error) => {
    expect(error.cause).toBeInstanceOf(Error);
    if (code !== undefined) {
      expect(error.cause).toBeInstanceOf(Database.SqliteError);
      expect((error.cause as { code?: unknown }).code).toBe(code);
    }
  };
}

function newerSchema(f: Fixture): void {
  f.sql((db) => {
    const columns = (db.pragma("table_info(cruxx_migration)") as { name: string }[]).map(
      (c) => c.name,
    );
    expect(columns).toEqual(["name", "timestamp"]);
    db.prepare("insert into cruxx_migration (name, timestamp) values (?, ?)").run(
      "9999_future",
      new Date().toISOString(),
    );
  });
}

function foreignTasks(f: Fixture): void {
  f.target = join(f.root, "foreign.db");
  f.sql((db) => {
    db.exec("create table tasks (id integer primary key, title text not null)");
    db.prepare("insert into tasks (title) values (?), (?)").run("buy milk", "walk dog");
  }, f.target);
}

const fileRows: Row[] = [
  {
    name: "open a file of 4 KB of random bytes",
    code: "STORAGE",
    type: StorageError,
    message: /^storage error: /,
    setup: (f) => {
      f.target = join(f.root, "noise.db");
      writeFileSync(f.target, noise(4096));
    },
    act: (f) => f.open(),
    check: driverCause("SQLITE_NOTADB"),
  },
  {
    name: "open a file of 4 KB of random bytes read-only",
    code: "STORAGE",
    type: StorageError,
    setup: (f) => {
      f.target = join(f.root, "noise.db");
      writeFileSync(f.target, noise(4096, 7));
    },
    act: (f) => f.open({ readOnly: true }),
    check: driverCause("SQLITE_NOTADB"),
  },
  {
    name: "open a text file",
    code: "STORAGE",
    type: StorageError,
    setup: (f) => {
      f.target = join(f.root, "notes.txt");
      writeFileSync(f.target, "these are my notes, not a database\n".repeat(20));
    },
    act: (f) => f.open(),
    check: driverCause("SQLITE_NOTADB"),
  },
  {
    name: "open a path in a directory that does not exist",
    code: "STORAGE",
    type: StorageError,
    setup: (f) => {
      f.target = join(f.root, "missing", "deeper", "registry.db");
    },
    act: (f) => f.open(),
    check: (error) => {
      driverCause()(error);
      expect((error.cause as Error).message).toMatch(/directory does not exist/);
    },
  },
  {
    name: "open a path whose parent is a regular file",
    code: "STORAGE",
    type: StorageError,
    setup: (f) => {
      writeFileSync(join(f.root, "plain-file"), "x");
      f.target = join(f.root, "plain-file", "registry.db");
    },
    act: (f) => f.open(),
    check: driverCause(),
  },
  {
    name: "open a directory as the database",
    code: "STORAGE",
    type: StorageError,
    setup: (f) => {
      f.target = join(f.root, "a-directory");
      mkdirSync(f.target);
    },
    act: (f) => f.open(),
    check: driverCause(),
  },
  {
    name: "open read-only a file that does not exist",
    code: "STORAGE",
    type: StorageError,
    setup: (f) => {
      f.target = join(f.root, "absent.db");
    },
    act: (f) => f.open({ readOnly: true }),
    check: driverCause(),
  },
  {
    name: "open read-only an empty file (it would need migrating)",
    code: "READ_ONLY",
    type: ReadOnlyError,
    setup: (f) => {
      f.target = join(f.root, "empty.db");
      writeFileSync(f.target, "");
    },
    act: (f) => f.open({ readOnly: true }),
  },
  {
    name: "open a file written by a newer schema",
    code: "SCHEMA_VERSION",
    type: SchemaVersionError,
    message: /9999_future/,
    setup: newerSchema,
    act: (f) => f.open(),
  },
  {
    name: "open read-only a file written by a newer schema",
    code: "SCHEMA_VERSION",
    type: SchemaVersionError,
    message: /9999_future/,
    setup: newerSchema,
    act: (f) => f.open({ readOnly: true }),
    readOnlySideFiles: true,
  },
  {
    name: "open a file with a foreign `tasks` table",
    code: "SCHEMA_VERSION",
    type: SchemaVersionError,
    setup: foreignTasks,
    act: (f) => f.open(),
  },
  {
    name: "SqliteBackend.open on the application's Database with a foreign `tasks` table",
    code: "SCHEMA_VERSION",
    type: SchemaVersionError,
    setup: foreignTasks,
    act: (f) => {
      const db = new Database(f.target);
      // The application's connection is not ours to close, even when opening fails.
      f.cleanup.push(() => {
        expect(db.open).toBe(true);
        db.close();
      });
      return SqliteBackend.open(db).then((backend) => f.track(backend));
    },
  },
];

/** A read-only registry whose reads work; the write under test must then fail. */
async function readOnlyRegistry(f: Fixture): Promise<TaskRegistry> {
  const reg = await f.open({ readOnly: true });
  expect((await reg.get(f.ids.plain)).input).toEqual({ repo: "cruxx", n: [1, 2, 3] });
  expect((await reg.loadCheckpoint(f.ids.checkpointed))?.agent).toBe("test");
  expect((await reg.pending("")).map((t) => t.id)).toEqual([f.ids.plain, f.ids.checkpointed]);
  return reg;
}

const readOnlyRows: Row[] = [
  ["submit", (r: TaskRegistry) => r.submit("build", { new: true })],
  ["updateStatus", (r: TaskRegistry, f: Fixture) => r.updateStatus(f.ids.plain, "running")],
  ["checkpoint", (r: TaskRegistry, f: Fixture) => r.checkpoint(f.ids.plain, makeCrux())],
].map(
  ([op, write]): Row => ({
    name: `${op as string} on a registry opened with readOnly: true`,
    code: "READ_ONLY",
    type: ReadOnlyError,
    act: async (f) =>
      (write as (r: TaskRegistry, f: Fixture) => Promise<unknown>)(await readOnlyRegistry(f), f),
    readOnlySideFiles: true,
  }),
);
readOnlyRows.push({
  name: "submit through SqliteBackend.open on a read-only Database of the application",
  code: "READ_ONLY",
  type: ReadOnlyError,
  act: async (f) => {
    const db = new Database(f.target, { readonly: true, fileMustExist: true });
    f.cleanup.push(() => db.close());
    const reg = new TaskRegistry(f.track(await SqliteBackend.open(db)));
    expect((await reg.get(f.ids.running)).status).toBe("running");
    return reg.submit("build", 1);
  },
  readOnlySideFiles: true,
});

const CLOSED_OPS: readonly (readonly [
  string,
  (r: TaskRegistry, f: Fixture) => Promise<unknown>,
])[] = [
  ["get", (r, f) => r.get(f.ids.plain)],
  ["submit", (r) => r.submit("build", 1)],
  ["updateStatus", (r, f) => r.updateStatus(f.ids.plain, "done")],
  ["checkpoint", (r, f) => r.checkpoint(f.ids.plain, makeCrux())],
  ["pending", (r) => r.pending("")],
  ["loadCheckpoint", (r, f) => r.loadCheckpoint(f.ids.checkpointed)],
];

const closedRows: Row[] = CLOSED_OPS.map(
  ([op, call]): Row => ({
    name: `${op} after close`,
    code: "CLOSED",
    type: ClosedError,
    message: "the registry backend is closed",
    act: async (f) => {
      const reg = await f.open();
      await reg.close();
      await reg.close(); // idempotent
      return call(reg, f);
    },
  }),
);

const optionRows: Row[] = [
  ["casRetries", 0],
  ["casRetries", -1],
  ["casRetries", 1.5],
  ["casRetries", "3"],
  ["maxInputBytes", 0],
  ["maxInputBytes", Number.NaN],
  // Expected (gap today): backend options are checked like the registry's. A NaN busy
  // timeout makes the busy-retry loop never give up; an unknown durability silently runs
  // with synchronous=NORMAL instead of FULL.
  ["busyTimeoutMs", Number.NaN],
  ["busyTimeoutMs", -1],
  ["durability", "FULL"],
].map(
  ([option, value]): Row => ({
    // Expected as well: a refused option leaves no connection open behind it (checked by the
    // side files: a leaked connection keeps `-wal`/`-shm` alive after every handle closed).
    name: `openRegistry with ${option as string}: ${typeof value === "string" ? JSON.stringify(value) : String(value)}`,
    code: "VALIDATION",
    type: ValidationError,
    path: `$.${option as string}`,
    act: (f) => f.open(bad({ [option as string]: value })),
  }),
);

const OPTIONS_TRAP = new Error("options trap");

/** An options argument that is not an object, or whose fields cannot be read. */
const unreadableOptionRows: Row[] = [
  ["null", null, "$"],
  ["a number", 5, "$"],
  ["an array", [], "$"],
  [
    "a Proxy whose get trap throws",
    new Proxy(
      {},
      {
        get: () => {
          throw OPTIONS_TRAP;
        },
      },
    ),
    "$.durability",
  ],
  [
    "a throwing getter",
    {
      get busyTimeoutMs(): number {
        throw OPTIONS_TRAP;
      },
    },
    "$.busyTimeoutMs",
  ],
].map(
  ([what, options, path]): Row => ({
    name: `openRegistry with options ${what as string}`,
    code: "VALIDATION",
    type: ValidationError,
    path: path as string,
    act: (f) => f.open(bad(options)),
    check: (error) => {
      if (path !== "$") expect(error.cause).toBe(OPTIONS_TRAP);
    },
  }),
);

const ROWS: readonly Row[] = [
  ...idRows,
  ...statusRows,
  ...notFoundRows,
  ...submitRows,
  ...pendingRows,
  ...checkpointRows,
  ...corruptRows,
  ...fileRows,
  ...readOnlyRows,
  ...closedRows,
  ...optionRows,
  ...unreadableOptionRows,
];

// ---------------------------------------------------------------------------------------

describe("bad input on a SQLite file is refused and changes nothing", () => {
  it("has the rows the brief asks for", () => {
    expect(ROWS.length).toBeGreaterThanOrEqual(20);
    expect(new Set(ROWS.map((r) => r.name)).size).toBe(ROWS.length);
    for (const row of ROWS) if (row.code === "VALIDATION") expect(row.path, row.name).toBeDefined();
  });

  it.each(ROWS)("$name → $code", async (row) => {
    const f = new Fixture();
    row.setup?.(f);
    const tasksBefore = tasksTable(f.target);
    const filesBefore = filesUnder(f.root, row.readOnlySideFiles === true);

    let error: unknown;
    try {
      const outcome = await Promise.resolve().then(() => row.act(f));
      error = new Error(`resolved instead of rejecting: ${String(outcome)}`);
    } catch (e) {
      error = e;
    } finally {
      await f.closeAll();
    }

    // (a) the right error
    expect(error).toBeInstanceOf(RegistryError);
    expect(error).toBeInstanceOf(row.type);
    const registryError = error as RegistryError;
    expect(registryError.code).toBe(row.code);
    expect(isRegistryError(error)).toBe(true);
    expect(hasErrorCode(error, row.code)).toBe(true);
    if (row.path !== undefined && hasErrorCode(error, "VALIDATION")) {
      // hasErrorCode narrows to the code's subclass: `path` type-checks without a cast.
      expect(error.path).toBe(row.path);
      expect(registryError.message.startsWith(`validation error at ${row.path}: `)).toBe(true);
    }
    const message = typeof row.message === "function" ? row.message(f) : row.message;
    if (typeof message === "string") expect(registryError.message).toBe(message);
    else if (message !== undefined) expect(registryError.message).toMatch(message);
    if (row.code === "STORAGE") {
      expect(registryError.message).toMatch(/^storage error: /);
      expect(registryError.cause).toBeDefined();
    }
    row.check?.(registryError, f);

    // (b) nothing written: the same files, byte for byte, and no side files left behind ...
    expect(filesUnder(f.root, row.readOnlySideFiles === true)).toEqual(filesBefore);
    // ... and the same tasks, read through a connection of our own.
    expect(tasksTable(f.target)).toEqual(tasksBefore);
  });

  it("the prepared rows are what the rows assume", () => {
    const f = new Fixture();
    const rows = tasksTable(f.path) as { id: string; kind: string; status: string; data: string }[];
    expect(rows.map((r) => [r.id, r.kind, r.status])).toEqual([
      [ids.plain, "build", "pending"],
      [ids.checkpointed, "analyze", "pending"],
      [ids.running, "deploy", "running"],
    ]);
    expect(rows[1]?.data).toContain('"attempts":1');
    expect(rows.some((r) => r.id === ids.missing)).toBe(false);
  });
});
