/**
 * How the public API names "a better-sqlite3 Database the application already has". The
 * published types cannot name better-sqlite3's own `Database`: it lives in
 * @types/better-sqlite3, a devDependency here, which a consumer need not have. So this is
 * the part of it the adapter relies on, structurally; any better-sqlite3 Database matches.
 */
export interface BetterSqlite3Database {
  readonly name: string;
  readonly open: boolean;
  readonly memory: boolean;
  readonly readonly: boolean;
  readonly inTransaction: boolean;
  prepare(source: string): unknown;
  exec(source: string): unknown;
  pragma(source: string, options?: { simple?: boolean }): unknown;
  close(): unknown;
}
