import { optionsObject } from "./arguments.js";
import { SqliteBackend, type SqliteBackendOptions } from "./backend/sqlite/index.js";
import { registrySettings, type TaskRegistryOptions } from "./options.js";
import { TaskRegistry } from "./registry.js";

export type OpenRegistryOptions = SqliteBackendOptions & TaskRegistryOptions;

/**
 * A TaskRegistry on a SQLite file (created and migrated if needed) or `:memory:`. Every
 * option is checked first: bad ones leave no file behind.
 */
export async function openRegistry(
  path: string,
  options: OpenRegistryOptions = {},
): Promise<TaskRegistry> {
  // Read once: the backend and the registry see the same values, checked here.
  const given = optionsObject(options, [
    "durability",
    "busyTimeoutMs",
    "readOnly",
    "casRetries",
    "maxInputBytes",
    "retryBackoff",
    "clock",
  ]);
  registrySettings(given);
  return new TaskRegistry(await SqliteBackend.open(path, given), given);
}
