/**
 * What can be stored: the limits the writers check before anything is written and the reader
 * enforces on every stored document, defined once so that whatever is written reads back.
 */
import { formatPath, ValidationError } from "./errors.js";

/** Nesting of a whole stored document: its outermost object is level 1. */
export const MAX_DEPTH = 512;

/**
 * Where a caller's value sits in a stored task document: how many objects and arrays enclose
 * it. Its own nesting may add `MAX_DEPTH` minus this many levels.
 */
export const DEPTH = {
  /** `{"input": …}` */
  input: 1,
  /** `{"checkpoint": …}` */
  checkpoint: 1,
  /** `{"checkpoint": {"value": {"Ok": …}}}` */
  result: 3,
  /** `{"checkpoint": {"value": {"Err": …}}}`; `last_error` holds the same CruxErr */
  error: 3,
  /** `{"checkpoint": {"steps": [ … ]}}`: appended steps are spliced in there on read */
  step: 3,
} as const;

/**
 * UTF-16 units in a stored task document, appended steps spliced in as `get` reads it. Half of
 * V8's largest string (2^29 - 24 units), so the reader can hold it, and its UTF-8 form (at
 * most 3 bytes a unit) stays under SQLite's default 1e9-byte value limit. The headroom also
 * covers what the registry itself adds to a full document (a status, the attempt count, a
 * cancel's or a sweep's error), which is why the writers check it and the reader need not.
 */
export const MAX_DOCUMENT_LENGTH = 2 ** 28;

/** A ValidationError at `path` when a stored document of `length` units would be over budget. */
export function checkDocumentLength(length: number, path: string): void {
  if (length > MAX_DOCUMENT_LENGTH) {
    throw new ValidationError(
      path,
      `the task document would be ${length} characters long; at most ${MAX_DOCUMENT_LENGTH} are stored`,
    );
  }
}

export const MAX_KIND_LENGTH = 255;
export const MAX_OWNER_LENGTH = 255;
export const MAX_IDEMPOTENCY_KEY_LENGTH = 1024;
export const MAX_REASON_LENGTH = 1024;
/** A step's name, as `ctx.step()` takes it (it is also the `step` of a step_failed CruxErr). */
export const MAX_STEP_NAME_LENGTH = 1024;

/**
 * A string of `min` to `max` UTF-16 units with a UTF-8 form (no lone surrogate: SQLite would
 * store it altered, serde_json cannot read it), or a ValidationError at `path`.
 */
export function checkText(value: unknown, path: string, min: number, max: number): string {
  if (
    typeof value !== "string" ||
    value.length < min ||
    value.length > max ||
    !value.isWellFormed()
  ) {
    throw new ValidationError(
      path,
      `expected a string of ${min} to ${max} characters without lone surrogates`,
    );
  }
  return value;
}

interface Open {
  readonly value: object;
  /** Its level in the stored document. */
  readonly level: number;
  readonly parent: Open | undefined;
  readonly key: string | number;
}

/**
 * A ValidationError naming the path of the first array or plain object in `value` that would
 * sit deeper than `MAX_DEPTH` once `value` is stored `depth` levels deep, or of the first part
 * that cannot be read (a throwing getter, a revoked Proxy). Iterative, and it stops at the
 * limit, so no value is too deep (or cyclic) for it: it runs before anything recursive (zod's
 * schemas, the writers) sees a structured value. Any other object is a leaf here.
 */
export function checkNesting(value: unknown, depth: number, path: string): void {
  const stack: Open[] = [];
  // What is being read, for the path of an error thrown by reading it.
  let at: Open | undefined;
  let key: string | number | undefined;
  const visit = (child: unknown, parent: Open | undefined, name: string | number): void => {
    if (typeof child !== "object" || child === null) return;
    if (!Array.isArray(child)) {
      const proto: unknown = Object.getPrototypeOf(child);
      if (proto !== Object.prototype && proto !== null) return;
    }
    const level = (parent?.level ?? depth) + 1;
    const open = { value: child, level, parent, key: name };
    if (level > MAX_DEPTH) {
      const what = isAncestor(child, parent) ? "cycle" : `nesting deeper than ${MAX_DEPTH}`;
      throw new ValidationError(pathOf(open, path), what);
    }
    stack.push(open);
  };
  try {
    visit(value, undefined, "");
    for (at = stack.pop(); at !== undefined; at = stack.pop()) {
      const container = at.value as Record<string, unknown>;
      key = undefined;
      if (Array.isArray(container)) {
        for (key = 0; key < container.length; key++) visit(container[key], at, key);
      } else {
        for (key of Object.keys(container)) visit(container[key], at, key);
      }
    }
  } catch (error) {
    if (error instanceof ValidationError) throw error;
    const container = at === undefined ? path : pathOf(at, path);
    const where = key === undefined ? container : formatPath(container, [key]);
    throw new ValidationError(where, "the value cannot be read", { cause: error });
  }
}

function isAncestor(value: object, parent: Open | undefined): boolean {
  for (let p = parent; p !== undefined; p = p.parent) if (p.value === value) return true;
  return false;
}

function pathOf(open: Open, root: string): string {
  const keys: (string | number)[] = [];
  for (let p: Open | undefined = open; p?.parent !== undefined; p = p.parent) keys.push(p.key);
  return formatPath(root, keys.reverse());
}
