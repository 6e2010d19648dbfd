/**
 * Every backend the contract suite covers. A new adapter adds one line here and is then run
 * through every contract, seed and model-based test.
 */
import { mkdtempSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { MemoryBackend } from "../../src/backend/memory.js";
import type { RegistryBackend } from "../../src/backend/port.js";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";

export interface BackendFactory {
  readonly name: string;
  readonly open: () => Promise<RegistryBackend>;
}

/** Every backend, or only the one named by ONLY_BACKEND (e.g. `ONLY_BACKEND=memory npx vitest run`). */
export const BACKENDS: readonly BackendFactory[] = [
  { name: "memory", open: async () => new MemoryBackend() },
  { name: "sqlite :memory:", open: () => SqliteBackend.open(":memory:") },
  { name: "sqlite file", open: () => SqliteBackend.open(tempDbPath()) },
].filter((b) => process.env.ONLY_BACKEND === undefined || b.name === process.env.ONLY_BACKEND);

/** A fresh path in a new temporary folder; the file does not exist yet. */
export function tempDbPath(name = "registry.db"): string {
  return join(mkdtempSync(join(tmpdir(), "cruxx-registry-")), name);
}

/** Run `fn` on a plain connection of our own to an existing file, then close it. */
export function withDb<T>(file: string, fn: (db: Database.Database) => T): T {
  const db = new Database(file, { fileMustExist: true });
  try {
    return fn(db);
  } finally {
    db.close();
  }
}
