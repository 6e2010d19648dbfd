/**
 * The adapter's public options. No better-sqlite3 type here: the published declarations
 * reach this file, and a consumer need not have @types/better-sqlite3.
 */
export const DURABILITY_MODES = ["full", "normal"] as const;
export type Durability = (typeof DURABILITY_MODES)[number];

export interface SqliteBackendOptions {
  /**
   * `full` (default): every resolved write has been fsynced, so it survives power loss. The
   * fsync runs off the event loop, after the commit: other connections may read a write a
   * moment before it resolves.
   * `normal`: writes survive a crash of the process; the last ones may roll back on power loss.
   */
  readonly durability?: Durability;
  /** How long a write waits for another connection's lock before a BusyError. Default 10 s. */
  readonly busyTimeoutMs?: number;
  /** Open without writing anything; every write fails with a ReadOnlyError. */
  readonly readOnly?: boolean;
}
