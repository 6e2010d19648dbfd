/** `full` durability's fsync off the event loop: WalSync flushes the WAL on the thread pool. */
import { fsync, writeFileSync } from "node:fs";
import { dirname } from "node:path";
import { describe, expect, it } from "vitest";
import { type Fsync, WalSync } from "../../src/backend/sqlite/wal-sync.js";
import { tempDbPath } from "../support/backends.js";

/** An fsync that records each call and finishes only when the test says so. */
function heldFsync() {
  const calls: { fd: number; finish: (error?: NodeJS.ErrnoException) => void }[] = [];
  const syncFile: Fsync = (fd, done) => {
    calls.push({ fd, finish: (error) => done(error ?? null) });
  };
  return { calls, syncFile };
}

/** Settles pending callbacks and promise reactions. */
const settle = () => new Promise((resolve) => setTimeout(resolve, 20));

function walFile(): string {
  const path = `${tempDbPath()}-wal`;
  writeFileSync(path, "frames");
  return path;
}

describe("WalSync", () => {
  it("resolves only after an fsync that began after the call, and syncs the folder once", async () => {
    const { calls, syncFile } = heldFsync();
    const sync = new WalSync(walFile(), syncFile);
    let done = false;
    const first = sync.durable().then(() => {
      done = true;
    });
    await settle();
    expect(calls).toHaveLength(1); // the folder, at the first open
    calls[0]?.finish();
    await settle();
    expect(calls).toHaveLength(2); // the WAL file
    expect(done).toBe(false);
    calls[1]?.finish();
    await first;
    expect(done).toBe(true);
    await sync.close();
  });

  it("makes the calls that arrive during an fsync share the next one", async () => {
    const { calls, syncFile } = heldFsync();
    const sync = new WalSync(walFile(), syncFile);
    const first = sync.durable();
    await settle();
    calls[0]?.finish(); // the folder
    await settle();
    const resolved: number[] = [];
    const later = [1, 2, 3].map((n) => sync.durable().then(() => resolved.push(n)));
    await settle();
    expect(calls).toHaveLength(2); // nothing new while the first runs
    calls[1]?.finish();
    await first;
    await settle();
    expect(resolved).toEqual([]); // their commits may be after the first fsync began
    expect(calls).toHaveLength(3); // one more, for all three
    calls[2]?.finish();
    await Promise.all(later);
    expect(resolved.sort()).toEqual([1, 2, 3]);
    await sync.close();
  });

  it("rejects when the fsync fails, and tries again at the next call", async () => {
    const { calls, syncFile } = heldFsync();
    const sync = new WalSync(walFile(), syncFile);
    const failing = sync.durable();
    await settle();
    calls[0]?.finish();
    await settle();
    calls[1]?.finish(Object.assign(new Error("EIO: i/o error"), { code: "EIO" }));
    await expect(failing).rejects.toThrow("EIO");
    const retry = sync.durable();
    await settle();
    calls[2]?.finish();
    await retry;
    expect(calls).toHaveLength(3);
    await sync.close();
  });

  it("flushes a real file with the real fsync", async () => {
    const fds: number[] = [];
    const sync = new WalSync(walFile(), (fd, done) => {
      fds.push(fd);
      fsync(fd, done);
    });
    await sync.durable();
    await sync.durable();
    expect(fds).toHaveLength(3); // the folder, then the file twice
    await sync.close();
  });

  it("rejects when there is no WAL file to flush", async () => {
    const sync = new WalSync(`${dirname(tempDbPath())}/missing-wal`);
    await expect(sync.durable()).rejects.toThrow("ENOENT");
    await sync.close();
  });
});
