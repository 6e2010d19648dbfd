export { DEFAULT_LEASE_MS, MIN_LEASE_MS } from "./arguments.js";
export * as adapterKit from "./backend/kit.js";
export { MemoryBackend } from "./backend/memory.js";
export type {
  Batch,
  Change,
  ChangeFeed,
  LeaseRequest,
  RegistryBackend,
  RunEnd,
  SeedWrite,
} from "./backend/port.js";
export {
  type BetterSqlite3Database,
  DURABILITY_MODES,
  type Durability,
  SqliteBackend,
  type SqliteBackendOptions,
} from "./backend/sqlite/index.js";
export * from "./errors.js";
export {
  type Listener,
  REGISTRY_EVENT_NAMES,
  type RegistryEventName,
  type RegistryEvents,
} from "./events.js";
export { CruxFailure } from "./failure.js";
export {
  type CruxId,
  isCruxId,
  isTaskId,
  newCruxId,
  newTaskId,
  type TaskId,
} from "./ids.js";
export { type OpenRegistryOptions, openRegistry } from "./open.js";
export type {
  ClaimOptions,
  FailOptions,
  PendingOptions,
  QuarantinedOptions,
  RecoverOptions,
  RetryBackoff,
  SubmitOptions,
  SubmitRequest,
  TaskRegistryOptions,
} from "./options.js";
export type {
  ClaimedTask,
  CompleteResult,
  FailResult,
  HeartbeatResult,
  QuarantinedTask,
  TaskRecord,
} from "./record.js";
export { TaskRegistry } from "./registry.js";
export type {
  KindFilter,
  Lease,
  Quarantined,
  StepRecord,
  StoredDocument,
  SweepFilter,
  TaskRow,
  TaskState,
} from "./task-state.js";
export {
  decodeCrux,
  decodeTask,
  encodeCrux,
  encodeTask,
  parseJsonText as parseJson,
  stringifyJsonValue as stringifyJson,
} from "./wire/codec.js";
export { contentHash, identityHash } from "./wire/hash.js";
export { F64, type Json } from "./wire/json.js";
export {
  BUDGET_KINDS,
  type BudgetKind,
  type Crux,
  type CruxErr,
  type CruxValue,
  STEP_KINDS,
  STEP_STATUSES,
  type Step,
  type StepKind,
  type StepStatus,
  TASK_STATUSES,
  type Task,
  type TaskStatus,
  type U64,
} from "./wire/schema.js";
export { type StepOptions, type StepValue, WorkContext } from "./worker/context.js";
export { REPLAY_MODES, type ReplayMode } from "./worker/replay.js";
export { type StopOptions, Worker, type WorkHandler, type WorkOptions } from "./worker/worker.js";
