/**
 * The SQLite adapter: one file (or `:memory:`), WAL, prepared statements compiled from the
 * Kysely schema, and every driver failure translated into a RegistryError.
 */
export { SqliteBackend } from "./backend.js";
export type { BetterSqlite3Database } from "./database.js";
export { DURABILITY_MODES, type Durability, type SqliteBackendOptions } from "./options.js";
