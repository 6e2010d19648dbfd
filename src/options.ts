/**
 * What the TaskRegistry takes: its methods' option types, and its own options checked, with
 * their defaults.
 */
import { checkedClock, optionsObject, positiveInteger } from "./arguments.js";

export interface RetryBackoff {
  /** Delay before the first retry; each later one doubles it. Default 1 s. */
  readonly baseMs: number;
  /** The longest delay. Default 5 min. */
  readonly maxMs: number;
}

export interface TaskRegistryOptions {
  /** Read-modify-CAS cycles of updateStatus/checkpoint before a ConflictError. Default 3, as in the seed. */
  readonly casRetries?: number;
  /** Largest accepted `input`, in bytes of its JSON. Default 1 MiB. */
  readonly maxInputBytes?: number;
  /** Backoff between runs of a failing task (with jitter: each delay is 50–100% of this). */
  readonly retryBackoff?: Partial<RetryBackoff>;
  /**
   * The clock, in epoch ms: an integer from 0 (1970) to 9999-12-31T23:59:59.999Z, else the
   * operation reading it fails with VALIDATION at `$.clock`. Tests move it to expire leases
   * without sleeping.
   */
  readonly clock?: () => number;
}

export interface PendingOptions {
  /** At most this many tasks, oldest first. Default: all. */
  readonly limit?: number;
}

export interface QuarantinedOptions {
  /** A kind, an array of kinds, or `""` / `[]` (the default) for every kind. */
  readonly kinds?: string | readonly string[];
  /** At most this many, in the order they were quarantined. Default: all. */
  readonly limit?: number;
}

export interface SubmitOptions {
  /** Not claimed before this many ms from now. */
  readonly delayMs?: number;
  /** Not claimed before this time (epoch ms or Date). */
  readonly runAt?: number | Date;
  /** Higher is claimed first. Default 0. */
  readonly priority?: number;
  /** Runs before a failing task is failed for good. Default 3. */
  readonly maxAttempts?: number;
  /** A second submit with the same key writes nothing and returns the first task's id. */
  readonly idempotencyKey?: string;
}

export interface SubmitRequest {
  readonly kind: string;
  readonly input: unknown;
  readonly options?: SubmitOptions;
}

export interface ClaimOptions {
  /** Who holds the lease (a worker name); shown to operators and in LEASE_LOST errors. */
  readonly owner: string;
  /** How long the lease lasts without a heartbeat. Default 30 s, at least 100 ms. */
  readonly leaseMs?: number;
}

export interface FailOptions {
  /**
   * Fail the task for good, whatever runs remain: the error cannot heal by retrying (bad
   * input, a result that cannot be stored). Default false.
   */
  readonly final?: boolean;
}

export interface RecoverOptions {
  /**
   * Also take back tasks leased to this owner whose leases have not yet expired: a worker
   * restarting under a stable name knows its earlier leases are dead.
   */
  readonly owner?: string;
}

export interface RegistrySettings {
  readonly casRetries: number;
  readonly maxInputBytes: number;
  readonly backoff: RetryBackoff;
  readonly clock: () => number;
}

/** The options checked (VALIDATION naming the field), with their defaults. */
export function registrySettings(options: TaskRegistryOptions): RegistrySettings {
  const { casRetries, maxInputBytes, retryBackoff, clock } = optionsObject(options, [
    "casRetries",
    "maxInputBytes",
    "retryBackoff",
    "clock",
  ]);
  const backoff = optionsObject(
    retryBackoff,
    ["baseMs", "maxMs"],
    "$.retryBackoff",
    "expected { baseMs?, maxMs? }",
  );
  return {
    casRetries: positiveInteger(casRetries ?? 3, "$.casRetries"),
    maxInputBytes: positiveInteger(maxInputBytes ?? 1024 * 1024, "$.maxInputBytes"),
    backoff: {
      baseMs: positiveInteger(backoff.baseMs ?? 1000, "$.retryBackoff.baseMs"),
      maxMs: positiveInteger(backoff.maxMs ?? 300_000, "$.retryBackoff.maxMs"),
    },
    clock: clock === undefined ? Date.now : checkedClock(clock),
  };
}
