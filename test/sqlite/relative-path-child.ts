/**
 * Child process for relative-path.test.ts (vitest's workers cannot chdir), started as
 * `node --import tsx relative-path-child.ts '<RelativePathConfig JSON>'`.
 *
 * Opens `registry.db` relative to `dir`, moves to `elsewhere`, and writes bursts of large
 * tasks: enough commits to start the background checkpoint thread. After each burst once the
 * thread runs, it waits until every WAL frame has been copied into the database file, read
 * from the WAL index in `registry.db-shm`. Prints `checkpointed <WAL bytes>`, or `stuck` and
 * exits 1 if a wait passes its safety bound.
 */
import { readFileSync, statSync } from "node:fs";
import { endianness } from "node:os";
import { join } from "node:path";
import { openRegistry } from "../../src/open.js";
import { scriptConfig } from "../support/child.js";

export interface RelativePathConfig {
  readonly dir: string;
  readonly elsewhere: string;
}

const BURSTS = 8;
const PER_BURST = 50;
/** Bursts written before waiting: the thread starts after 200 commits. */
const BEFORE_THREAD = 5;
const STUCK_AFTER_MS = 20_000;

const config = scriptConfig<RelativePathConfig>(
  "relative-path-child.ts '<RelativePathConfig JSON>'",
);
process.chdir(config.dir);
const registry = await openRegistry("registry.db", { durability: "normal" });
process.chdir(config.elsewhere);

const file = join(config.dir, "registry.db");
/**
 * The WAL index header (SQLite's wal.c): mxFrame, the last valid frame, at byte 16, and
 * nBackfill, the frames copied into the database file, at byte 96; native byte order.
 */
function walIndex(): { frames: number; backfilled: number } {
  const shm = readFileSync(`${file}-shm`);
  const read = (offset: number) =>
    endianness() === "LE" ? shm.readUInt32LE(offset) : shm.readUInt32BE(offset);
  return { frames: read(16), backfilled: read(96) };
}

const big = "x".repeat(16 * 1024);
for (let burst = 0; burst < BURSTS; burst++) {
  for (let i = 0; i < PER_BURST; i++) await registry.submit("k", { big, burst, i });
  if (burst < BEFORE_THREAD) continue;
  const deadline = Date.now() + STUCK_AFTER_MS;
  for (let index = walIndex(); index.backfilled !== index.frames; index = walIndex()) {
    if (Date.now() > deadline) {
      process.stdout.write(`stuck ${JSON.stringify(index)}\n`);
      process.exit(1);
    }
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
process.stdout.write(`checkpointed ${statSync(`${file}-wal`).size}\n`);
await registry.close();
