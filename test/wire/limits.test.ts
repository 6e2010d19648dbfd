/**
 * The shared limits (src/limits.ts) and what the wire layer hands out: the nesting pre-check
 * that runs before anything recursive, the writers' depth accounting against the parser's,
 * decoders given something that is not text, and JSON.stringify of errors and decoded values.
 */
import { describe, expect, it } from "vitest";
import {
  BusyError,
  ClosedError,
  ConflictError,
  InvalidStateError,
  LeaseLostError,
  NotFoundError,
  ReadOnlyError,
  type RegistryError,
  SchemaVersionError,
  SerializationError,
  StorageError,
  ValidationError,
} from "../../src/errors.js";
import { CruxFailure } from "../../src/failure.js";
import { newCruxId, newTaskId } from "../../src/ids.js";
import * as pkg from "../../src/index.js";
import { checkNesting, MAX_DEPTH } from "../../src/limits.js";
import {
  decodeCrux,
  decodeTask,
  encodeCrux,
  encodeTask,
  writeCrux,
  writeCruxErr,
  writeStep,
} from "../../src/wire/codec.js";
import { F64, type Json, JsonValueError, parseJson, stringifyJson } from "../../src/wire/json.js";
import type { CruxErr } from "../../src/wire/schema.js";
import { makeCrux, stepRecord } from "../support/crux.js";

function nested(levels: number): Json {
  let value: Json = 1;
  for (let i = 0; i < levels; i++) value = [value];
  return value;
}

/** What `fn` throws. */
function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (error) {
    return error;
  }
  throw new Error("expected a throw");
}

/** `text` wrapped in `levels` arrays: a document that puts `text` that deep. */
function wrapped(text: string, levels: number): string {
  return `${"[".repeat(levels)}${text}${"]".repeat(levels)}`;
}

describe("checkNesting", () => {
  it("counts levels from the value's depth in the document, like the parser", () => {
    expect(() => checkNesting(nested(MAX_DEPTH - 3), 3, "$.v")).not.toThrow();
    const error = thrown(() => checkNesting(nested(MAX_DEPTH - 2), 3, "$.v"));
    expect(error).toBeInstanceOf(ValidationError);
    expect((error as ValidationError).path).toBe(`$.v${"[0]".repeat(MAX_DEPTH - 3)}`);
    expect(() => parseJson(wrapped(JSON.stringify(nested(MAX_DEPTH - 3)), 3))).not.toThrow();
    expect(() => parseJson(wrapped(JSON.stringify(nested(MAX_DEPTH - 2)), 3))).toThrow(/nesting/);
  });

  it("stops at the limit: 1,000,000 levels and a cycle are refused, without recursion", () => {
    let deep: unknown = null;
    for (let i = 0; i < 1_000_000; i++) deep = { a: deep };
    expect((thrown(() => checkNesting(deep, 0, "$")) as Error).message).toMatch(
      /nesting deeper than 512/,
    );
    const cyclic: { self?: unknown; list: unknown[] } = { list: [] };
    cyclic.list.push(cyclic);
    const error = thrown(() => checkNesting(cyclic, 0, "$")) as ValidationError;
    expect(error.message).toMatch(/cycle$/);
  });

  it("treats F64, Date and other class instances as leaves, and names odd keys in the path", () => {
    expect(() => checkNesting({ f: new F64(1), d: new Date(0) }, MAX_DEPTH - 1, "$")).not.toThrow();
    const error = thrown(() => checkNesting({ "a b": { "": [] } }, MAX_DEPTH - 2, "$"));
    expect((error as ValidationError).path).toBe('$["a b"][""]');
  });
});

describe("the writers count depth as the parser does", () => {
  const step = (output: Json) => stepRecord("s", 1n, output);

  it("stringifyJson(value, depth): exactly MAX_DEPTH levels in all", () => {
    expect(() => stringifyJson(nested(MAX_DEPTH - 5), 5)).not.toThrow();
    const error = thrown(() => stringifyJson(nested(MAX_DEPTH - 4), 5));
    expect(error).toBeInstanceOf(JsonValueError);
    expect((error as JsonValueError).path).toBe(`$${"[0]".repeat(MAX_DEPTH - 5)}`);
  });

  it("writeStep at its place in a task document (inside checkpoint.steps) reads back spliced there", () => {
    const text = writeStep(step(nested(MAX_DEPTH - 4)), "$.step");
    const crux = { ...makeCrux(), steps: [] };
    const task = encodeTask({
      id: newTaskId(),
      kind: "k",
      status: "running",
      input: null,
      checkpoint: crux,
      attempts: 0,
    });
    const spliced = task.replace('"steps":[]', `"steps":[${text}]`);
    expect(decodeTask(spliced).checkpoint?.steps[0]?.output).toEqual(nested(MAX_DEPTH - 4));
    expect(() => writeStep(step(nested(MAX_DEPTH - 3)), "$.step")).toThrow(ValidationError);
  });

  it("writeCrux and writeCruxErr refuse a Crux or CruxErr placed past the limit", () => {
    const crux = { ...makeCrux(), steps: [] };
    expect(() => writeCrux(crux, "$", MAX_DEPTH - 2)).not.toThrow();
    expect((thrown(() => writeCrux(crux, "$.c", MAX_DEPTH - 1)) as ValidationError).path).toBe(
      "$.c",
    );
    const err: CruxErr = { kind: "cancelled", reason: "r" };
    expect(() => writeCruxErr(err, "$", MAX_DEPTH - 1)).not.toThrow();
    expect(() => writeCruxErr(err, "$", MAX_DEPTH)).toThrow(ValidationError);
  });

  it("encodeCrux refuses a 100,000-deep Crux with VALIDATION, not a stack overflow", () => {
    let crux = makeCrux();
    for (let i = 0; i < 100_000; i++) crux = { ...makeCrux(), children: [crux] };
    expect(thrown(() => encodeCrux(crux))).toBeInstanceOf(ValidationError);
  });
});

describe("decoders given something that is not text", () => {
  it.each([null, 123, undefined, {}, Buffer.from("{}")])(
    "decodeTask / decodeCrux (%s): VALIDATION at $",
    (value) => {
      for (const decode of [decodeTask, decodeCrux]) {
        const error = thrown(() => decode(value as never));
        expect(error).toBeInstanceOf(ValidationError);
        expect((error as ValidationError).path).toBe("$");
      }
    },
  );
});

describe("JSON.stringify of what the library hands out", () => {
  const id = newTaskId();

  it.each<[RegistryError, Record<string, unknown>]>([
    [new NotFoundError(id), { name: "NotFoundError", code: "NOT_FOUND", taskId: id }],
    [new ConflictError(id), { name: "ConflictError", code: "CONFLICT", taskId: id }],
    [new SerializationError("x"), { name: "SerializationError", code: "SERIALIZATION" }],
    [new StorageError("x", { cause: 1n }), { name: "StorageError", code: "STORAGE" }],
    [new ValidationError("$.a", "x"), { name: "ValidationError", code: "VALIDATION", path: "$.a" }],
    [new SchemaVersionError("x"), { name: "SchemaVersionError", code: "SCHEMA_VERSION" }],
    [new BusyError("x"), { name: "BusyError", code: "BUSY" }],
    [new ReadOnlyError("x"), { name: "ReadOnlyError", code: "READ_ONLY" }],
    [new ClosedError(), { name: "ClosedError", code: "CLOSED" }],
    [new LeaseLostError(id, "x"), { name: "LeaseLostError", code: "LEASE_LOST", taskId: id }],
    [new InvalidStateError("x"), { name: "InvalidStateError", code: "INVALID_STATE" }],
  ])("%s", (error, fields) => {
    expect(JSON.parse(JSON.stringify(error))).toEqual({ ...fields, message: error.message });
  });

  it("a CruxFailure, its err and F64: u64 bigints as decimal strings, F64 as its number", () => {
    const failure = new CruxFailure({
      kind: "budget_exceeded",
      budget_kind: "tokens",
      limit: 2n ** 63n,
      actual: 2n ** 64n - 1n,
    });
    const err = {
      kind: "budget_exceeded",
      budget_kind: "tokens",
      limit: "9223372036854775808",
      actual: "18446744073709551615",
    };
    expect(JSON.parse(JSON.stringify(failure))).toEqual({
      name: "CruxFailure",
      message: failure.message,
      err,
    });
    expect(JSON.parse(JSON.stringify(failure.err))).toEqual(err);
    expect(JSON.stringify([new F64(1), new F64(-0.5)])).toBe("[1,-0.5]");
  });

  it("decodeTask and decodeCrux values, and the checkpoint inside a task", () => {
    const Ok = parseJson('{"big":18446744073709551615,"__proto__":[-9223372036854775808]}');
    const crux = { ...makeCrux(), value: { Ok } };
    const text = encodeTask({
      id,
      kind: "k",
      status: "done",
      input: { n: 2n ** 53n },
      checkpoint: crux,
      attempts: 1,
    });
    const task = decodeTask(text);
    const plain = JSON.parse(JSON.stringify(task));
    expect(plain.input).toEqual({ n: "9007199254740992" });
    expect(plain.checkpoint.steps[0].input_hash).toBe("42");
    expect(JSON.parse(JSON.stringify(task.checkpoint)).value.Ok.big).toBe("18446744073709551615");
    const decoded = JSON.parse(
      JSON.stringify(decodeCrux(encodeCrux({ ...crux, id: newCruxId() }))),
    );
    expect(Object.getOwnPropertyDescriptor(decoded.value.Ok, "__proto__")?.value).toEqual([
      "-9223372036854775808",
    ]);
    expect(Object.keys(task)).not.toContain("toJSON");
  });
});

describe("the package's exported helpers refuse bad arguments with VALIDATION", () => {
  it.each([
    ["parseJson(null)", () => pkg.parseJson(null as unknown as string), "$"],
    ["parseJson('x')", () => pkg.parseJson("x"), "$"],
    ["stringifyJson(undefined)", () => pkg.stringifyJson(undefined), "$"],
    ["stringifyJson({ a: NaN })", () => pkg.stringifyJson({ a: Number.NaN }), "$.a"],
    ["identityHash('s', 1.5)", () => pkg.identityHash("s", 1.5), "$.ordinal"],
    ["identityHash(1, 0)", () => pkg.identityHash(1 as unknown as string, 0), "$.name"],
    ["contentHash(undefined)", () => pkg.contentHash(undefined as unknown as Json), "$.key"],
    ["newTaskId(-1)", () => pkg.newTaskId(-1), "$.now"],
    ["newCruxId(NaN)", () => pkg.newCruxId(Number.NaN), "$.now"],
  ])("%s", (_name, call, path) => {
    let caught: unknown;
    try {
      call();
    } catch (error) {
      caught = error;
    }
    expect(pkg.hasErrorCode(caught, "VALIDATION")).toBe(true);
    expect(caught).toMatchObject({ path });
  });
});
