/**
 * Every failure a caller can see is a RegistryError with a stable `code`.
 * Guards check `code`, not `instanceof`, so errors survive crossing module copies and processes.
 */

export const ERROR_CODES = [
  "NOT_FOUND",
  "CONFLICT",
  "SERIALIZATION",
  "STORAGE",
  "VALIDATION",
  "SCHEMA_VERSION",
  "BUSY",
  "READ_ONLY",
  "CLOSED",
  "LEASE_LOST",
  "INVALID_STATE",
] as const;
export type ErrorCode = (typeof ERROR_CODES)[number];

export abstract class RegistryError extends Error {
  abstract readonly code: ErrorCode;

  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = new.target.name;
  }

  /** For JSON.stringify: name, code, message and the error's own fields (`taskId`, `path`). */
  toJSON(): { readonly name: string; readonly code: ErrorCode; readonly message: string } {
    return Object.assign({ name: this.name, code: this.code, message: this.message }, this);
  }
}

/** `task not found: {id}` — the seed's NotFound. */
export class NotFoundError extends RegistryError {
  readonly code = "NOT_FOUND";
  constructor(readonly taskId: string) {
    super(`task not found: ${taskId}`);
  }
}

/** `CAS conflict on task {id}` — every compare-and-swap retry lost to another writer. */
export class ConflictError extends RegistryError {
  readonly code = "CONFLICT";
  constructor(readonly taskId: string) {
    super(`CAS conflict on task ${taskId}`);
  }
}

/** `serialization error: {e}` — a stored record that does not decode. */
export class SerializationError extends RegistryError {
  readonly code = "SERIALIZATION";
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`serialization error: ${detail}`, options);
  }
}

/** `storage error: {msg}` — the database failed; the driver's error is the cause. */
export class StorageError extends RegistryError {
  readonly code = "STORAGE";
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`storage error: ${detail}`, options);
  }
}

/** `root` followed by `keys`, as a ValidationError names a path: `$.input.a[1]["a b"]`. */
export function formatPath(root: string, keys: readonly PropertyKey[]): string {
  let out = root;
  for (const key of keys) {
    if (typeof key === "number") out += `[${key}]`;
    else if (typeof key === "string" && IDENTIFIER.test(key)) out += `.${key}`;
    else out += `[${JSON.stringify(String(key))}]`;
  }
  return out;
}

const IDENTIFIER = /^[A-Za-z_$][\w$]*$/;

/** Bad input from the caller; `path` names the offending field (`$` is the whole value). */
export class ValidationError extends RegistryError {
  readonly code = "VALIDATION";
  constructor(
    readonly path: string,
    detail: string,
    options?: { cause?: unknown },
  ) {
    super(`validation error at ${path}: ${detail}`, options);
  }
}

/** The database was written by a schema this version does not know; it is left untouched. */
export class SchemaVersionError extends RegistryError {
  readonly code = "SCHEMA_VERSION";
}

/** Another connection held the write lock for longer than the configured busy timeout. */
export class BusyError extends RegistryError {
  readonly code = "BUSY";
}

/** A write was attempted on a database opened read-only or a file that cannot be written. */
export class ReadOnlyError extends RegistryError {
  readonly code = "READ_ONLY";
}

/** The backend was closed. */
export class ClosedError extends RegistryError {
  readonly code = "CLOSED";
  constructor() {
    super("the registry backend is closed");
  }
}

/** The caller's lease on a task is gone (expired and taken over, released, or the task moved on). */
export class LeaseLostError extends RegistryError {
  readonly code = "LEASE_LOST";
  constructor(
    readonly taskId: string,
    detail: string,
  ) {
    super(`lease lost on task ${taskId}: ${detail}`);
  }
}

/** The operation does not apply to the task in its current status (e.g. retrying a done task). */
export class InvalidStateError extends RegistryError {
  readonly code = "INVALID_STATE";
}

export function isRegistryError(error: unknown): error is RegistryError {
  let code: unknown;
  try {
    code = error instanceof Error ? (error as { code?: unknown }).code : undefined;
  } catch {
    return false; // a Proxy trap or a `code` getter threw: not one of ours
  }
  return typeof code === "string" && (ERROR_CODES as readonly string[]).includes(code);
}

/** The RegistryError subclass each code is thrown as. */
export interface ErrorByCode {
  NOT_FOUND: NotFoundError;
  CONFLICT: ConflictError;
  SERIALIZATION: SerializationError;
  STORAGE: StorageError;
  VALIDATION: ValidationError;
  SCHEMA_VERSION: SchemaVersionError;
  BUSY: BusyError;
  READ_ONLY: ReadOnlyError;
  CLOSED: ClosedError;
  LEASE_LOST: LeaseLostError;
  INVALID_STATE: InvalidStateError;
}

/**
 * Narrow an unknown error to the RegistryError subclass carrying `code` (by code, not
 * `instanceof`: `hasErrorCode(e, "VALIDATION")` gives `e.path`).
 */
export function hasErrorCode<C extends ErrorCode>(
  error: unknown,
  code: C,
): error is ErrorByCode[C] {
  return isRegistryError(error) && error.code === code;
}
