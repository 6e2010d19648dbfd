/**
 * Splice appended step documents into the top-level checkpoint's `steps` array of a Task
 * document, as text: reading a task whose steps were persisted one by one costs one scan of
 * the document, with no parse and no re-encoding of what is already there.
 */

import { TASK_STATUSES, type TaskStatus } from "./schema.js";

/** The Task document with `steps` appended (in order) to its checkpoint's steps array. */
export function spliceSteps(document: string, steps: readonly string[]): string {
  if (steps.length === 0) return document;
  const checkpoint = valueOfKey(document, 0, "checkpoint");
  if (checkpoint === undefined || document[checkpoint] !== "{") {
    throw new Error("the task document has no checkpoint to append steps to");
  }
  const array = valueOfKey(document, checkpoint, "steps");
  if (array === undefined || document[array] !== "[") {
    throw new Error("the checkpoint has no steps array");
  }
  const end = skipValue(document, array) - 1; // the closing `]`
  const separator = document[skipSpace(document, array + 1)] === "]" ? "" : ",";
  return `${document.slice(0, end)}${separator}${steps.join(",")}${document.slice(end)}`;
}

/**
 * How many steps the document's top-level checkpoint holds: 0 without a checkpoint, and 0
 * for text that is not a task document (the port stores any text; such a task never runs).
 */
export function countSteps(document: string): number {
  // Our writer ends a document with `"checkpoint":…,"attempts":N}`: a new task is answered
  // from its last few characters instead of a scan past its input.
  const attempts = document.lastIndexOf(',"attempts":');
  if (attempts >= 0 && document.startsWith('"checkpoint":null', attempts - 17)) return 0;
  try {
    const checkpoint = valueOfKey(document, 0, "checkpoint");
    if (checkpoint === undefined || document[checkpoint] !== "{") return 0;
    const array = valueOfKey(document, checkpoint, "steps");
    if (array === undefined || document[array] !== "[") return 0;
    let count = 0;
    let i = skipSpace(document, array + 1);
    while (i < document.length && document[i] !== "]") {
      count++;
      i = skipSpace(document, skipValue(document, i));
      if (document[i] === ",") i = skipSpace(document, i + 1);
    }
    return count;
  } catch {
    return 0;
  }
}

/** Where the top-level `checkpoint` value of a task document starts and ends, if it has one. */
export function checkpointBounds(document: string): { start: number; end: number } | undefined {
  try {
    const start = valueOfKey(document, 0, "checkpoint");
    return start === undefined ? undefined : { start, end: skipValue(document, start) };
  } catch {
    return undefined;
  }
}

/** The keys before the checkpoint in our writer's task documents, in order. */
const TASK_HEAD_KEYS = ["id", "kind", "status", "input"] as const;
const CRUX_KEYS = [
  "id",
  "agent",
  "value",
  "steps",
  "children",
  "started_at",
  "finished_at",
] as const;

/** What a run's transition changes in a task document, as JSON text. */
export interface RunEdit {
  /**
   * The status the document must have (`"running"`), else it is not edited as text; without
   * it, any status.
   */
  readonly fromStatusText?: string;
  /** The new status (`"done"`). */
  readonly statusText: string;
  /** The run's end, if it changes: else the checkpoint is kept as it is. */
  readonly run?: {
    /** The checkpoint's new `value`. */
    readonly valueText: string;
    /** The checkpoint's new `finished_at`. */
    readonly finishedAtText: string;
    /** The whole checkpoint for a task that has none yet; without it, none stays none. */
    readonly newCheckpoint?: () => string;
  };
}

/**
 * The document with its status, and its checkpoint's `value` and `finished_at`, replaced as
 * text, the rest kept byte for byte: a run ends without decoding (and validating again) the
 * input and steps the claim already decoded. Undefined unless the document is laid out
 * exactly as our writer lays it out (keys in order, no whitespace between them); the caller
 * then decodes and re-encodes instead, which gives the same text for such a document.
 */
export function editRun(document: string, edit: RunEdit): string | undefined {
  try {
    // The head's values (found by search when it can be), then the checkpoint's, then
    // `,"attempts":N}` must end it.
    const quick = quickLayout(document);
    const head = quick === undefined ? members(document, 0, TASK_HEAD_KEYS) : undefined;
    if (
      quick === undefined &&
      (head === undefined || !document.startsWith(CHECKPOINT_KEY, head.end))
    ) {
      return undefined;
    }
    const status = quick?.status ?? (head?.values.status as Range);
    const from = document.slice(status.start, status.end);
    if (
      edit.fromStatusText === undefined ? !STATUS_TEXTS.has(from) : from !== edit.fromStatusText
    ) {
      return undefined;
    }
    const checkpoint = quick?.checkpoint.start ?? (head?.end as number) + CHECKPOINT_KEY.length;
    const none = document.startsWith("null", checkpoint);
    const crux = none ? undefined : members(document, checkpoint, CRUX_KEYS);
    if (!none && (crux === undefined || document[crux.end] !== "}")) return undefined;
    const checkpointEnd = crux === undefined ? checkpoint + 4 : crux.end + 1; // past its `}`
    if (!ATTEMPTS_TAIL.test(document.slice(checkpointEnd))) return undefined;

    const newStatus = { ...status, text: edit.statusText };
    const { run } = edit;
    if (run === undefined) return replaceRanges(document, [newStatus]);
    if (crux === undefined) {
      if (run.newCheckpoint === undefined) return replaceRanges(document, [newStatus]);
      const nothing = { start: checkpoint, end: checkpointEnd, text: run.newCheckpoint() };
      return replaceRanges(document, [newStatus, nothing]);
    }
    return replaceRanges(document, [
      newStatus,
      { ...crux.values.value, text: run.valueText },
      { ...crux.values.finished_at, text: run.finishedAtText },
    ]);
  } catch {
    return undefined;
  }
}

/**
 * The status of a task document laid out as our writer lays it out (its third member), or
 * undefined for any other text or a status that is not one.
 */
export function statusOf(document: string): TaskStatus | undefined {
  try {
    const head = members(document, 0, STATUS_HEAD);
    if (head === undefined) return undefined;
    const { start, end } = head.values.status;
    const text = document.slice(start + 1, end - 1);
    return document[start] === '"' && (TASK_STATUSES as readonly string[]).includes(text)
      ? (text as TaskStatus)
      : undefined;
  } catch {
    return undefined;
  }
}

const STATUS_HEAD = ["id", "kind", "status"] as const;

/** Each status as the document writes it (`"pending"`…). */
const STATUS_TEXTS: ReadonlySet<string> = new Set(TASK_STATUSES.map((s) => `"${s}"`));

/** Where each member of a task document laid out as our writer lays it out is. */
export interface TaskLayout {
  readonly id: Range;
  readonly kind: Range;
  readonly status: Range;
  readonly input: Range;
  readonly checkpoint: Range;
  readonly attempts: Range;
}

/** The members of a task document laid out exactly as our writer lays it out, or undefined. */
export function taskLayout(document: string): TaskLayout | undefined {
  const quick = quickLayout(document);
  if (quick !== undefined) return quick;
  try {
    const head = members(document, 0, TASK_HEAD_KEYS);
    if (head === undefined || !document.startsWith(CHECKPOINT_KEY, head.end)) return undefined;
    const start = head.end + CHECKPOINT_KEY.length;
    const end = skipValue(document, start);
    const tail = document.slice(end);
    if (!ATTEMPTS_TAIL.test(tail)) return undefined;
    const attempts = { start: end + ',"attempts":'.length, end: document.length - 1 };
    return { ...head.values, checkpoint: { start, end }, attempts };
  } catch {
    return undefined;
  }
}

/**
 * taskLayout by search instead of a walk, for the documents claims make and read, whose
 * checkpoint is null or a new run's (no steps, children or value yet); undefined for any
 * other. Every search is exact, not a guess: the id has a fixed length and no escapes; a kind
 * (a JSON string) holds no unescaped quote, so the first `","status":"` ends it; `attempts`
 * is the last member, so the last `,"attempts":` is its own; and the checkpoint must match a
 * new run's fixed shape from the last `,"checkpoint":{"id":"cruxx_` up to it, which only the
 * real checkpoint can (the variable parts are escaped strings).
 */
function quickLayout(d: string): TaskLayout | undefined {
  const kindStart = 47; // `{"id":"task_` + 26 + `","kind":`
  if (!d.startsWith('{"id":"task_') || !d.startsWith('","kind":"', kindStart - 9)) {
    return undefined;
  }
  const kindEnd = d.indexOf('","status":"', kindStart) + 1;
  if (kindEnd === 0) return undefined;
  const statusStart = kindEnd + ',"status":'.length;
  const statusEnd = d.indexOf('"', statusStart + 1) + 1;
  if (statusEnd === 0 || !d.startsWith(',"input":', statusEnd)) return undefined;
  const attemptsKey = d.lastIndexOf(',"attempts":');
  const attempts = { start: attemptsKey + ',"attempts":'.length, end: d.length - 1 };
  if (attemptsKey < 0 || d[attempts.end] !== "}" || !isDigits(d, attempts.start, attempts.end)) {
    return undefined;
  }
  let checkpointKey = attemptsKey - ',"checkpoint":null'.length;
  if (!d.startsWith(',"checkpoint":null', checkpointKey)) {
    checkpointKey = d.lastIndexOf(',"checkpoint":{"id":"cruxx_', attemptsKey);
    if (checkpointKey < 0 || !isNewRun(d, checkpointKey + CHECKPOINT_KEY.length, attemptsKey)) {
      return undefined;
    }
  }
  const inputStart = statusEnd + ',"input":'.length;
  // Whitespace around the input is not our writer's (the walk in members() refuses it too).
  if (checkpointKey <= inputStart || isSpace(d, inputStart) || isSpace(d, checkpointKey - 1)) {
    return undefined;
  }
  return {
    id: { start: 6, end: 39 },
    kind: { start: kindStart, end: kindEnd },
    status: { start: statusStart, end: statusEnd },
    input: { start: inputStart, end: checkpointKey },
    checkpoint: { start: checkpointKey + CHECKPOINT_KEY.length, end: attemptsKey },
    attempts,
  };
}

/** Whether `d` from `start` to `end` is a new run's checkpoint as our writer lays it out. */
function isNewRun(d: string, start: number, end: number): boolean {
  const agent = start + '{"id":"cruxx_'.length + 26 + '","agent":'.length;
  if (!d.startsWith('","agent":"', agent - 10) || d[end - 1] !== "}") return false;
  const agentEnd = skipString(d, agent);
  const middle = ',"value":{"Ok":null},"steps":[],"children":[],"started_at":"';
  if (!d.startsWith(middle, agentEnd)) return false;
  const startedEnd = d.indexOf('"', agentEnd + middle.length) + 1;
  if (startedEnd === 0 || !d.startsWith(',"finished_at":', startedEnd)) return false;
  const finished = startedEnd + ',"finished_at":'.length;
  if (d.startsWith("null}", finished)) return finished + 5 === end;
  return d[finished] === '"' && d.indexOf('"', finished + 1) + 2 === end;
}

function isSpace(text: string, i: number): boolean {
  return skipSpace(text, i) !== i;
}

function isDigits(text: string, start: number, end: number): boolean {
  if (end <= start) return false;
  for (let i = start; i < end; i++) {
    const c = text.charCodeAt(i);
    if (c < 0x30 || c > 0x39) return false;
  }
  return true;
}

/** What putSteps made: the new document, or the first step that would leave a gap. */
export type PutSteps =
  | { readonly data: string; readonly gap?: undefined }
  | { readonly gap: { readonly ordinal: number; readonly next: number } };

/**
 * The document with each step (JSON text, by ordinal) put into its checkpoint's steps as
 * text: one at an existing ordinal replaces that step, one at the next ordinal extends them.
 * Undefined unless the document is laid out exactly as our writer lays it out, with a
 * checkpoint (the caller decodes and re-encodes instead).
 */
export function putSteps(
  document: string,
  steps: readonly { readonly ordinal: number; readonly data: string }[],
): PutSteps | undefined {
  try {
    const head = members(document, 0, TASK_HEAD_KEYS);
    if (head === undefined || !document.startsWith(CHECKPOINT_KEY, head.end)) return undefined;
    const crux = members(document, head.end + CHECKPOINT_KEY.length, CRUX_KEYS);
    if (crux === undefined || document[crux.end] !== "}") return undefined;
    if (!ATTEMPTS_TAIL.test(document.slice(crux.end + 1))) return undefined;
    const array = crux.values.steps;
    const items: string[] = [];
    for (let i = array.start + 1; document[i] !== "]"; ) {
      const end = skipValue(document, i);
      items.push(document.slice(i, end));
      i = document[end] === "," ? end + 1 : end;
    }
    for (const { ordinal, data } of steps) {
      if (ordinal > items.length) return { gap: { ordinal, next: items.length } };
      items[ordinal] = data;
    }
    return { data: replaceRanges(document, [{ ...array, text: `[${items.join(",")}]` }]) };
  } catch {
    return undefined;
  }
}

const CHECKPOINT_KEY = ',"checkpoint":';
const ATTEMPTS_TAIL = /^,"attempts":\d+\}$/;

interface Range {
  readonly start: number;
  readonly end: number;
}

/**
 * The values of the first members of the object at `start`, if their keys are exactly
 * `keys`, in order, with no whitespace around them; `end` is where the last value ends.
 */
function members<K extends string>(
  text: string,
  start: number,
  keys: readonly K[],
): { values: Record<K, Range>; end: number } | undefined {
  if (text[start] !== "{") return undefined;
  const values = {} as Record<K, Range>;
  let i = start + 1;
  for (const [n, key] of keys.entries()) {
    if (n > 0) {
      if (text[i] !== ",") return undefined;
      i++;
    }
    const quoted = `"${key}":`;
    if (!text.startsWith(quoted, i)) return undefined;
    i += quoted.length;
    const end = skipValue(text, i);
    values[key] = { start: i, end };
    i = end;
  }
  return { values, end: i };
}

/** `text` with each range (in order, not overlapping) replaced by its `text`. */
function replaceRanges(text: string, ranges: readonly (Range & { text: string })[]): string {
  let out = "";
  let at = 0;
  for (const range of ranges) {
    out += text.slice(at, range.start) + range.text;
    at = range.end;
  }
  return out + text.slice(at);
}

/**
 * Position of the value of `key` in the object starting at `start` (after any whitespace: the
 * seed's put stores any layout), or undefined.
 */
function valueOfKey(text: string, at: number, key: string): number | undefined {
  const start = skipSpace(text, at);
  if (text[start] !== "{") return undefined;
  let i = skipSpace(text, start + 1);
  while (text[i] === '"') {
    const keyEnd = skipString(text, i);
    const name = text.slice(i + 1, keyEnd - 1); // our keys have no escapes
    const value = skipSpace(text, skipSpace(text, keyEnd) + 1); // past `:`
    if (name === key) return value;
    i = skipSpace(text, skipValue(text, value));
    if (text[i] === ",") i = skipSpace(text, i + 1);
  }
  return undefined;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;

/** Position just past the JSON value starting at `i`. */
function skipValue(text: string, i: number): number {
  const c = text.charCodeAt(i);
  if (c === QUOTE) return skipString(text, i);
  if (c !== 0x7b && c !== 0x5b) {
    let j = i;
    while (j < text.length && !ENDS_SCALAR.has(text.charCodeAt(j))) j++;
    return j;
  }
  let depth = 0;
  for (let j = i; j < text.length; j++) {
    const ch = text.charCodeAt(j);
    if (ch === QUOTE) j = skipString(text, j) - 1;
    else if (ch === 0x7b || ch === 0x5b) depth++;
    else if (ch === 0x7d || ch === 0x5d) {
      depth--;
      if (depth === 0) return j + 1;
    }
  }
  throw new Error("unterminated JSON value");
}

/** What ends a number or literal: `,` `}` `]` and whitespace. */
const ENDS_SCALAR = new Set([0x2c, 0x7d, 0x5d, 0x20, 0x0a, 0x0d, 0x09]);

/** Position just past the string literal starting at `i` (a `"`). */
function skipString(text: string, i: number): number {
  // indexOf finds the next quote natively; it ends the string unless an odd run of
  // backslashes escapes it.
  for (let from = i + 1; ; ) {
    const quote = text.indexOf('"', from);
    if (quote < 0) throw new Error("unterminated JSON string");
    let backslashes = 0;
    while (text.charCodeAt(quote - 1 - backslashes) === BACKSLASH) backslashes++;
    if (backslashes % 2 === 0) return quote + 1;
    from = quote + 1;
  }
}

function skipSpace(text: string, i: number): number {
  let j = i;
  while (text[j] === " " || text[j] === "\n" || text[j] === "\r" || text[j] === "\t") j++;
  return j;
}
