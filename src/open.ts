import { SqliteBackend, type SqliteBackendOptions } from "./backend/sqlite.js";
import { registrySettings, TaskRegistry, type TaskRegistryOptions } from "./registry.js";

export type OpenRegistryOptions = SqliteBackendOptions & TaskRegistryOptions;

/**
 * A TaskRegistry on a SQLite file (created and migrated if needed) or `:memory:`. Every
 * option is checked first: bad ones leave no file behind.
 */
export async function openRegistry(
  path: string,
  options: OpenRegistryOptions = {},
): Promise<TaskRegistry> {
  registrySettings(options);
  return new TaskRegistry(await SqliteBackend.open(path, options), options);
}
