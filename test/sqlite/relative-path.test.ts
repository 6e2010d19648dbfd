/**
 * A registry opened by a relative path keeps working on its file after process.chdir(): the
 * background checkpoint thread (and the WAL watch and fsync) use the path resolved at open,
 * not the name again in the new directory, where another file of that name may live.
 */
import { createHash } from "node:crypto";
import { mkdirSync, mkdtempSync, readdirSync, readFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import Database from "better-sqlite3";
import { afterEach, expect, it } from "vitest";
import { killChildren, startScript } from "../support/child.js";
import type { RelativePathConfig } from "./relative-path-child.js";

const CHILD = join(dirname(fileURLToPath(import.meta.url)), "relative-path-child.ts");

afterEach(killChildren);

const sha256 = (path: string) => createHash("sha256").update(readFileSync(path)).digest("hex");

it("after chdir the WAL is checkpointed into the file opened, and nothing is touched elsewhere", {
  timeout: 120_000,
}, async () => {
  const root = mkdtempSync(join(tmpdir(), "cruxx-registry-chdir-"));
  const dir = join(root, "here");
  const elsewhere = join(root, "elsewhere");
  mkdirSync(dir);
  mkdirSync(elsewhere);
  // Another database of the same name in the new directory (rollback journal, as SQLite's
  // default), which a checkpointer opening "registry.db" there would find and use.
  const decoy = join(elsewhere, "registry.db");
  const other = new Database(decoy);
  other.exec("create table unrelated (x)");
  other.close();
  const decoyHash = sha256(decoy);

  const child = startScript(CHILD, { dir, elsewhere } satisfies RelativePathConfig);
  const walBytes = Number(await child.line("checkpointed", 90_000));
  expect(await child.exited).toMatchObject({ code: 0, signal: null });

  // The WAL was rewound after each checkpoint: about a burst's frames, not all 400 writes'.
  expect(walBytes).toBeLessThan(8 * 1024 * 1024);
  expect(readdirSync(elsewhere)).toEqual(["registry.db"]);
  expect(sha256(decoy)).toBe(decoyHash);
  const db = new Database(join(dir, "registry.db"), { readonly: true });
  try {
    expect(db.prepare("select count(*) from tasks").pluck().get()).toBe(400);
    expect(db.pragma("integrity_check", { simple: true })).toBe("ok");
  } finally {
    db.close();
  }
});
