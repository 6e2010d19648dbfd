/**
 * The SQLite adapter's change feed: its version (PRAGMA data_version) moves when another
 * connection commits, and its watch (the WAL file) calls listeners soon after, until they stop.
 */
import { afterEach, expect, it } from "vitest";
import type { ChangeFeed } from "../../src/backend/port.js";
import { SqliteBackend } from "../../src/backend/sqlite/index.js";
import { TaskRegistry } from "../../src/registry.js";
import { tempDbPath } from "../support/backends.js";

const open: { close(): Promise<void> }[] = [];
afterEach(async () => {
  await Promise.all(open.splice(0).map((r) => r.close()));
});

async function twoConnections(): Promise<{
  feed: ChangeFeed;
  mine: TaskRegistry;
  other: TaskRegistry;
}> {
  const path = tempDbPath();
  const backend = await SqliteBackend.open(path);
  const mine = new TaskRegistry(backend);
  const other = new TaskRegistry(await SqliteBackend.open(path));
  open.push(mine, other);
  if (backend.changes === undefined) throw new Error("a SQLite file has a change feed");
  return { feed: backend.changes, mine, other };
}

it("its version moves when another connection commits, not for this connection's own", async () => {
  const { feed, mine, other } = await twoConnections();
  const before = await feed.version();
  await mine.submit("job", null);
  expect(await feed.version()).toBe(before);
  await other.submit("job", null);
  expect(await feed.version()).not.toBe(before);
});

it("its watch tells of another connection's commit, until it is stopped", async () => {
  const { feed, other } = await twoConnections();
  if (feed.watch === undefined) throw new Error("a SQLite file is watched");
  let calls = 0;
  let told: () => void = () => undefined;
  const first = new Promise<void>((resolve) => {
    told = resolve;
  });
  const stop = feed.watch(() => {
    calls++;
    told();
  });
  await other.submit("job", null);
  await first; // the test's timeout is the bound
  stop();
  const seen = calls;
  await other.submit("job", null);
  await new Promise((resolve) => setTimeout(resolve, 100));
  expect(calls).toBe(seen);
});

it("after close() its version is CLOSED", async () => {
  const backend = await SqliteBackend.open(tempDbPath());
  await backend.close();
  await expect(backend.changes?.version()).rejects.toMatchObject({ code: "CLOSED" });
});
