/**
 * Task and Crux ⇄ JSON text, byte-compatible with serde_json in the Rust crate: same field
 * order, `events`/`metadata` only when non-empty, u64 exact, floats printed the Rust way.
 * The writers build the text directly so the order is fixed by code, not by object shape.
 */
import type { z } from "zod";
import { formatPath, RegistryError, SerializationError, ValidationError } from "../errors.js";
import type { TaskId } from "../ids.js";
import { checkNesting, DEPTH, MAX_DEPTH } from "../limits.js";
import type { TaskRow } from "../task-state.js";
import {
  formatF32,
  formatF64,
  type Json,
  JsonSyntaxError,
  JsonValueError,
  parseJson,
  stringifyJson,
  withJsonView,
} from "./json.js";
import {
  type Crux,
  type CruxErr,
  type CruxValue,
  cruxErrSchema,
  cruxSchema,
  type Step,
  stepSchema,
  TASK_STATUSES,
  type Task,
  type TaskStatus,
  taskSchema,
} from "./schema.js";
import { checkpointBounds, taskLayout } from "./splice.js";

// serde_json and JSON.stringify escape well-formed strings identically.
const stringText = (text: string): string => JSON.stringify(text);

/** Decode a Task document; a malformed one is a ValidationError naming the bad field's path. */
export function decodeTask(text: string): Task {
  return viewTask(decodeWith(taskSchema, text));
}

/**
 * Decode a task document our own writer laid out, without the schema: what a claim hands its
 * handler. Such a document was checked when it was written; only its shape is checked here
 * (members in our order, a status, ids, a checkpoint with no steps or children yet, as a new
 * run's is). Any other document is decoded with the schema, as decodeStoredTask does.
 */
export function decodeOwnTask(document: string, id: string): Task {
  try {
    const task = ownTask(document, id);
    if (task !== undefined) return task;
  } catch {
    // Not a document as we write them after all: the schema says what is wrong with it.
  }
  return decodeStoredTask(document, id);
}

function ownTask(document: string, id: string): Task | undefined {
  const layout = taskLayout(document);
  if (layout === undefined) return undefined;
  const text = (range: { start: number; end: number }) => document.slice(range.start, range.end);
  const status = STATUS_OF_TEXT.get(text(layout.status));
  const kind = parseString(text(layout.kind));
  const checkpoint = newRunCheckpoint(text(layout.checkpoint));
  const attempts = Number(text(layout.attempts));
  const fine =
    text(layout.id) === `"${id}"` &&
    status !== undefined &&
    kind?.isWellFormed() === true &&
    checkpoint !== undefined &&
    attempts <= U32_MAX;
  if (!fine) return undefined;
  return {
    id: id as TaskId,
    kind,
    status,
    input: parseJson(text(layout.input)),
    checkpoint,
    attempts,
  };
}

const U32_MAX = 0xffff_ffff;

/** Each status by its JSON text. */
const STATUS_OF_TEXT: ReadonlyMap<string, TaskStatus> = new Map(
  TASK_STATUSES.map((status) => [`"${status}"`, status]),
);

/** A JSON string's value, or undefined. */
function parseString(text: string): string | undefined {
  const value: unknown = JSON.parse(text);
  return typeof value === "string" ? value : undefined;
}

/**
 * A checkpoint a run may just have started (null, or no steps, children or value yet). Its
 * shape is checked, not its ids' and times' formats: our writer wrote it.
 */
function newRunCheckpoint(text: string): Crux | null | undefined {
  if (text === "null") return null;
  if (!text.includes(',"value":{"Ok":null},"steps":[],"children":[],')) return undefined;
  const crux = JSON.parse(text) as Record<string, unknown>;
  const { id, agent, started_at: started, finished_at: finished } = crux;
  const fine =
    typeof id === "string" &&
    typeof agent === "string" &&
    agent.isWellFormed() &&
    typeof started === "string" &&
    (finished === null || typeof finished === "string") &&
    Object.keys(crux).length === 7;
  return fine ? (crux as unknown as Crux) : undefined;
}

/** A step as we wrote it (writeStep); one that does not decode is a ValidationError at `path`. */
export function decodeStep(text: string, path: string): Step {
  return decodeWith(stepSchema, text, path);
}

/** Decode a Crux document; a malformed one is a ValidationError naming the bad field's path. */
export function decodeCrux(text: string): Crux {
  return withJsonView(decodeWith(cruxSchema, text));
}

/**
 * The task given a `toJSON`, as is each part of it that holds a bigint (the checkpoint, a
 * step, the input…): JSON.stringify writes their u64 bigints as strings.
 */
export function viewTask(task: Task): Task {
  return withJsonView(task);
}

/**
 * Decode a document read from storage: a malformed one is a SerializationError, as in the
 * seed, naming the task `id` when given. For internal use: a task handed out goes through
 * viewTask.
 */
export function decodeStoredTask(document: unknown, id?: string): Task {
  return decodeStored(document, id, "document", (text) => decodeWith(taskSchema, text));
}

/**
 * Decode a task's stored last error (CruxErr JSON), with a `toJSON` as every CruxErr handed
 * out has; a malformed one is a SerializationError.
 */
export function decodeStoredCruxErr(text: unknown, id?: string): CruxErr {
  return decodeStored(text, id, "last error", (json) =>
    withJsonView(decodeWith(cruxErrSchema, json, "$.lastError")),
  );
}

function decodeStored<T>(
  text: unknown,
  id: string | undefined,
  what: string,
  decode: (text: string) => T,
): T {
  if (typeof text !== "string") {
    throw new SerializationError(`${about(id)}the stored ${what} is ${typeof text}, not text`);
  }
  try {
    return decode(text);
  } catch (error) {
    if (error instanceof RegistryError) {
      throw new SerializationError(`${about(id)}${error.message}`, { cause: error });
    }
    throw error;
  }
}

function about(id: string | undefined): string {
  return id === undefined ? "" : `task ${id}: `;
}

/**
 * The stored document with its checkpoint replaced by `checkpoint` (already written as
 * `checkpointText`) and `attempts` + 1. In a document laid out as we write them, the old
 * checkpoint is not decoded: only the rest of the document is (and so checked), and its text
 * is kept as it is. A large checkpoint is not parsed again just to be thrown away.
 */
export function replaceCheckpoint(
  document: string,
  checkpoint: Crux,
  checkpointText: string,
): TaskRow {
  const bounds = checkpointBounds(document);
  const tail = bounds && document.slice(bounds.end);
  if (bounds === undefined || tail === undefined || !/^,"attempts":\d+\}$/.test(tail)) {
    const task = decodeStoredTask(document);
    const next = { ...task, checkpoint, attempts: task.attempts + 1 };
    return { kind: next.kind, status: next.status, data: writeTask(next) };
  }
  const head = decodeStoredTask(`${document.slice(0, bounds.start)}null${tail}`);
  const data = `${document.slice(0, bounds.start)}${checkpointText},"attempts":${head.attempts + 1}}`;
  return { kind: head.kind, status: head.status, data };
}

/** Validate a Task value and write it in the Rust crate's exact format. */
export function encodeTask(task: Task): string {
  checkNesting(task, 0, "$");
  return writeTask(validate(taskSchema, task));
}

/** Validate a Crux value and write it in the Rust crate's exact format. */
export function encodeCrux(crux: Crux): string {
  return writeCrux(checkCrux(crux, "$", 0), "$", 0);
}

/** A Crux value that can be stored `depth` levels deep in a document, or a ValidationError. */
export function checkCrux(value: unknown, path: string, depth: number): Crux {
  // Before zod, whose schema recurses into children: a deep value gets an error, not a stack overflow.
  checkNesting(value, depth, path);
  return validate(cruxSchema, value, path);
}

/** A CruxErr value that can be stored as a run's error, or a ValidationError; see checkCrux. */
export function checkCruxErr(value: unknown, path: string): CruxErr {
  checkNesting(value, DEPTH.error, path);
  return withJsonView(validate(cruxErrSchema, value, path));
}

/** Check a value against a schema at an API boundary; the error names the bad field. */
export function validate<S extends z.ZodType>(schema: S, value: unknown, root = "$"): z.output<S> {
  let result: z.ZodSafeParseResult<z.output<S>>;
  try {
    result = schema.safeParse(value);
  } catch (error) {
    // A getter or a Proxy trap of the caller's value threw.
    throw new ValidationError(root, "the value cannot be read", { cause: error });
  }
  if (result.success) return result.data;
  let path = root;
  let message = "invalid value";
  try {
    const issue = result.error.issues[0];
    path = issue ? formatPath(root, issue.path) : root;
    message = issue?.message ?? message;
  } catch (error) {
    // zod words its message when it is first read, looking at the value again (a revoked Proxy).
    throw new ValidationError(root, "the value cannot be read", { cause: error });
  }
  throw new ValidationError(path, message, { cause: result.error });
}

function decodeWith<S extends z.ZodType>(schema: S, text: string, root = "$"): z.output<S> {
  return validate(schema, parseJsonText(text, root), root);
}

/*
 * The writers below take the value's `depth` in the document being written: how many objects
 * and arrays enclose it. A value whose nesting would take the document past MAX_DEPTH (which
 * the parser refuses) is a ValidationError at its path. Each defaults to where the value sits
 * in a task document.
 */

/** Write an already-valid Task (internal fast path: no schema pass). */
export function writeTask(task: Task): string {
  return writeTaskWithInput(task, jsonTextAt(task.input, "$.input", DEPTH.input));
}

/** Write a Task whose input is already JSON text, so a caller that measured it need not re-encode. */
export function writeTaskWithInput(task: Omit<Task, "input">, inputText: string): string {
  const checkpoint = task.checkpoint === null ? "null" : writeCrux(task.checkpoint, "$.checkpoint");
  return `{"id":${stringText(task.id)},"kind":${stringText(task.kind)},"status":"${task.status}","input":${inputText},"checkpoint":${checkpoint},"attempts":${task.attempts}}`;
}

export function writeCrux(crux: Crux, path: string, depth: number = DEPTH.checkpoint): string {
  // Its object, and inside it the `steps` and `children` arrays, even when empty.
  checkLevel(depth + 2, path);
  const steps = crux.steps
    .map((step, i) => writeStep(step, `${path}.steps[${i}]`, depth + 2))
    .join(",");
  const children = crux.children
    .map((child, i) => writeCrux(child, `${path}.children[${i}]`, depth + 2))
    .join(",");
  const finished = crux.finished_at === null ? "null" : stringText(crux.finished_at);
  return `{"id":${stringText(crux.id)},"agent":${stringText(crux.agent)},"value":${writeCruxValue(crux.value, `${path}.value`, depth + 1)},"steps":[${steps}],"children":[${children}],"started_at":${stringText(crux.started_at)},"finished_at":${finished}}`;
}

export function writeStep(step: Step, path: string, depth: number = DEPTH.step): string {
  checkLevel(depth + 1, path);
  const fields = depth + 1;
  const contentHash = step.content_hash === null ? "null" : String(step.content_hash);
  const output = step.output === null ? "null" : jsonTextAt(step.output, `${path}.output`, fields);
  const error = step.error === null ? "null" : stringText(step.error);
  let text = `{"name":${stringText(step.name)},"kind":"${step.kind}","status":"${step.status}","confidence":${formatF32(step.confidence)},"started_at":${stringText(step.started_at)},"duration_ms":${step.duration_ms},"input_hash":${step.input_hash},"content_hash":${contentHash},"output":${output},"error":${error},"attempt":${step.attempt}`;
  if (step.events.length > 0) {
    text += `,"events":${jsonTextAt(step.events, `${path}.events`, fields)}`;
  }
  if (Object.keys(step.metadata).length > 0) {
    text += `,"metadata":${jsonTextAt(step.metadata, `${path}.metadata`, fields)}`;
  }
  return `${text}}`;
}

export function writeCruxValue(
  value: CruxValue,
  path: string,
  depth: number = DEPTH.checkpoint + 1,
): string {
  checkLevel(depth + 1, path);
  return "Ok" in value
    ? `{"Ok":${jsonTextAt(value.Ok, `${path}.Ok`, depth + 1)}}`
    : `{"Err":${writeCruxErr(value.Err, `${path}.Err`, depth + 1)}}`;
}

/** A CruxErr; by default as its own document, the way `last_error` stores it. */
export function writeCruxErr(err: CruxErr, path = "$", depth = 0): string {
  checkLevel(depth + 1, path);
  switch (err.kind) {
    case "step_failed":
      return `{"kind":"step_failed","step":${stringText(err.step)},"message":${stringText(err.message)}}`;
    case "low_confidence":
      return `{"kind":"low_confidence","step":${stringText(err.step)},"score":${formatF64(err.score)},"threshold":${formatF64(err.threshold)}}`;
    case "budget_exceeded":
      return `{"kind":"budget_exceeded","budget_kind":"${err.budget_kind}","limit":${err.limit},"actual":${err.actual}}`;
    case "delegation":
      return `{"kind":"delegation","to":${stringText(err.to)},"source":${writeCruxErr(err.source, `${path}.source`, depth + 1)}}`;
    case "cancelled":
      return `{"kind":"cancelled","reason":${stringText(err.reason)}}`;
    case "replay_mismatch":
      return `{"kind":"replay_mismatch","step":${stringText(err.step)},"expected":${err.expected},"actual":${err.actual}}`;
    case "denied":
      return `{"kind":"denied","step":${stringText(err.step)},"reason":${stringText(err.reason)}}`;
  }
}

/** A container at `level` of a document is one the parser reads; else a ValidationError. */
function checkLevel(level: number, path: string): void {
  if (level > MAX_DEPTH) throw new ValidationError(path, `nesting deeper than ${MAX_DEPTH}`);
}

/** parseJson for callers: text that is not JSON (or not text) is a ValidationError at `root`. */
export function parseJsonText(text: string, root = "$"): Json {
  if (typeof text !== "string") throw new ValidationError(root, "expected JSON text (a string)");
  try {
    return parseJson(text);
  } catch (error) {
    if (error instanceof JsonSyntaxError) {
      throw new ValidationError(root, error.message, { cause: error });
    }
    throw error;
  }
}

/** stringifyJson for callers: a value with no JSON form is a ValidationError at its path. */
export function stringifyJsonValue(value: unknown): string {
  return jsonTextAt(value, "$");
}

/**
 * Serialize an arbitrary JSON position, `depth` levels deep in its document; a non-JSON
 * value is a ValidationError at its path (with the caller's own error as its cause when
 * reading the value threw).
 */
export function jsonTextAt(value: unknown, path: string, depth = 0): string {
  try {
    return stringifyJson(value, depth);
  } catch (error) {
    if (error instanceof JsonValueError) {
      throw new ValidationError(path + error.path.slice(1), error.message, {
        cause: error.cause ?? error,
      });
    }
    throw error;
  }
}
