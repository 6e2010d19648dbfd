/**
 * better-sqlite3's errors, in one place: which ones mean "another connection holds the lock"
 * (retried, asynchronously, until the busy timeout), and the RegistryError every other one
 * becomes.
 */
import Database from "better-sqlite3";
import {
  BusyError,
  isRegistryError,
  ReadOnlyError,
  type RegistryError,
  StorageError,
} from "../../errors.js";

function sqliteCode(error: unknown): string | undefined {
  return error instanceof Database.SqliteError ? error.code : undefined;
}

export function isBusy(error: unknown): boolean {
  return sqliteCode(error)?.startsWith("SQLITE_BUSY") === true;
}

/** The error for an operation that waited `timeoutMs` for the lock in vain. */
export function busyTimeoutError(timeoutMs: number, cause: unknown): BusyError {
  return new BusyError(`the database stayed locked by another connection for ${timeoutMs} ms`, {
    cause,
  });
}

/** Retry `operation` with jittered backoff while SQLite reports the database busy. */
export async function retryWhileBusy<T>(
  timeoutMs: number,
  operation: () => T | Promise<T>,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (let delayMs = 1; ; delayMs = Math.min(delayMs * 2, 10)) {
    try {
      return await operation();
    } catch (error) {
      if (!isBusy(error)) throw error;
      if (Date.now() >= deadline) throw busyTimeoutError(timeoutMs, error);
      await new Promise((resolve) => setTimeout(resolve, delayMs * (0.5 + Math.random())));
    }
  }
}

/** `operation`'s result; its driver errors translated, except busy, which the caller retries. */
export function translated<T>(action: string, operation: () => T): T {
  try {
    return operation();
  } catch (error) {
    throw isBusy(error) ? error : toRegistryError(error, `${action} failed`);
  }
}

/** Translate a driver error; RegistryErrors pass through unchanged. */
export function toRegistryError(error: unknown, context: string): RegistryError {
  if (isRegistryError(error)) return error;
  const code = sqliteCode(error);
  const detail = error instanceof Error ? error.message : String(error);
  if (code?.startsWith("SQLITE_READONLY")) {
    return new ReadOnlyError(`${context}: the database is read-only (${detail})`, { cause: error });
  }
  if (code?.startsWith("SQLITE_BUSY")) {
    return new BusyError(`${context}: the database is locked (${detail})`, { cause: error });
  }
  if (code === "SQLITE_NOTADB") {
    return new StorageError(`${context}: the file is not a SQLite database`, { cause: error });
  }
  return new StorageError(`${context}: ${detail}`, { cause: error });
}
