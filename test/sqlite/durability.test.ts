/**
 * What each durability mode does at a commit, on a real file: in `full` mode on a file the
 * registry opened, the write is committed at once but resolves only after the WAL file was
 * fsynced (off the event loop); `normal` never waits for an fsync.
 */
import type * as fs from "node:fs";
import { existsSync, mkdtempSync, symlinkSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import Database from "better-sqlite3";
import { afterEach, describe, expect, it, vi } from "vitest";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import { newTaskId } from "../../src/ids.js";
import { newTaskState } from "../../src/lifecycle.js";
import { tempDbPath } from "../support/backends.js";

/** fsync calls made through node:fs, held until `release`: WalSync's, nobody else's here. */
const held = vi.hoisted(() => ({
  calls: [] as { fd: number; release: () => void }[],
}));

vi.mock("node:fs", async (importOriginal) => {
  const real = await importOriginal<typeof fs>();
  return {
    ...real,
    fsync: (fd: number, done: (error: NodeJS.ErrnoException | null) => void) => {
      held.calls.push({ fd, release: () => real.fsync(fd, done) });
    },
  };
});

afterEach(() => {
  for (const call of held.calls.splice(0)) call.release();
});

const settle = () => new Promise((resolve) => setTimeout(resolve, 30));

/**
 * The next held fsync, or undefined once `done()`: waits for whichever comes first, so a
 * loaded machine's slow thread pool cannot make a call look missing.
 */
async function nextHeld(done: () => boolean): Promise<{ release: () => void } | undefined> {
  for (let waited = 0; waited < 10_000; waited += 5) {
    if (done()) return undefined;
    const call = held.calls.shift();
    if (call !== undefined) return call;
    await new Promise((resolve) => setTimeout(resolve, 5));
  }
  throw new Error("neither an fsync nor the write's resolution came within 10 s");
}

function task() {
  const id = newTaskId();
  return newTaskState(
    {
      id,
      kind: "k",
      inputText: "{}",
      priority: 0,
      runAt: 0,
      maxAttempts: 1,
      idempotencyKey: null,
    },
    Date.now(),
  );
}

function rows(path: string): number {
  const db = new Database(path, { readonly: true });
  try {
    return (db.prepare("select count(*) as n from tasks").get() as { n: number }).n;
  } finally {
    db.close();
  }
}

describe("durability at a commit", () => {
  it("full, on a file it opened: committed at once, resolved only after the WAL's fsync", async () => {
    const path = tempDbPath();
    const backend = await SqliteBackend.open(path, { durability: "full" });
    let resolved = false;
    const write = backend.insert([task()]).then(() => {
      resolved = true;
    });
    await settle();
    expect(rows(path)).toBe(1); // visible to another connection: committed
    expect(resolved).toBe(false); // but not yet known to be on disk
    // The folder is synced once, at the first commit, then the WAL: released one by one.
    let released = 0;
    for (let call = await nextHeld(() => resolved); call; call = await nextHeld(() => resolved)) {
      call.release();
      released++;
    }
    await write;
    expect(released).toBe(2);
    await backend.close();
  });

  it("full, through a symlink: flushes the WAL beside the real file, where SQLite keeps it", async () => {
    const real = tempDbPath();
    const link = join(mkdtempSync(join(tmpdir(), "cruxx-link-")), "linked.db");
    new Database(real).close();
    symlinkSync(real, link);
    const backend = await SqliteBackend.open(link, { durability: "full" });
    const write = backend.insert([task()]);
    let settled = false;
    void write.finally(() => {
      settled = true;
    });
    while (!settled) {
      held.calls.shift()?.release();
      await settle();
    }
    await write; // rejects if the flush looked for a WAL beside the link
    expect(existsSync(`${real}-wal`)).toBe(true);
    expect(existsSync(`${link}-wal`)).toBe(false);
    await backend.close();
  });

  it("normal: writes resolve without any fsync", async () => {
    const path = tempDbPath();
    const backend = await SqliteBackend.open(path, { durability: "normal" });
    await backend.insert([task()]);
    await backend.insert([task()]);
    expect(held.calls).toHaveLength(0);
    expect(rows(path)).toBe(2);
    await backend.close();
  });

  it("full, on an application's Database: SQLite fsyncs inside the commit, as for its own writes", async () => {
    const db = new Database(tempDbPath());
    const backend = await SqliteBackend.open(db, { durability: "full" });
    await backend.insert([task()]);
    expect(held.calls).toHaveLength(0);
    expect(db.pragma("synchronous", { simple: true })).toBe(2);
    await backend.close();
    db.close();
  });
});
