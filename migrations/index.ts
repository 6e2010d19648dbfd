/**
 * The in-code migration provider: every migration, by number, with no file system scan at
 * run time (bundlers and single-file builds keep working). Append only; never edit one that
 * has shipped.
 */
import type { Migration, MigrationProvider } from "kysely";
import * as m0001 from "./0001_create_tasks.js";
import * as m0002 from "./0002_durable_execution.js";
import * as m0003 from "./0003_quarantine.js";
import * as m0004 from "./0004_appended_length.js";
import * as m0005 from "./0005_lease_for_running.js";
import * as m0006 from "./0006_lean_layout.js";

export const MIGRATIONS: Readonly<Record<string, Migration>> = {
  "0001_create_tasks": m0001,
  "0002_durable_execution": m0002,
  "0003_quarantine": m0003,
  "0004_appended_length": m0004,
  "0005_lease_for_running": m0005,
  "0006_lean_layout": m0006,
};

export const migrationProvider: MigrationProvider = {
  getMigrations: async () => MIGRATIONS,
};
