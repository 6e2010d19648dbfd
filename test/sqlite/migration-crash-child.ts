/**
 * Child process for migration-crash.test.ts, started as
 * `node --import tsx migration-crash-child.ts '<ChildConfig JSON>'`: it opens the registry
 * file, which runs its pending migrations in one transaction, and when that is about to run
 * the first statement containing `stopAt`, prints `stopped` and blocks right there, inside
 * the transaction, until the parent kills it.
 */
import { writeSync } from "node:fs";
import Database from "better-sqlite3";
import { SqliteBackend } from "../../src/index.js";
import { scriptConfig } from "../support/child.js";

export interface ChildConfig {
  readonly path: string;
  readonly stopAt: string;
}

const config = scriptConfig<ChildConfig>("migration-crash-child.ts '<ChildConfig JSON>'");
const db = new Database(config.path, {
  fileMustExist: true,
  // Called as each statement starts: the ones before it have run, uncommitted.
  verbose: (statement) => {
    if (!String(statement).includes(config.stopAt)) return;
    writeSync(1, "stopped\n"); // synchronously: the event loop never runs again
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0);
  },
});
await SqliteBackend.open(db);
process.stderr.write(`the migration never ran a statement containing ${config.stopAt}\n`);
process.exit(1);
