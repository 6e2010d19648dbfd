/**
 * Shared pieces of the worker tests: waiting for registry events with a generous bound (a
 * hang guard, never a speed assertion), gates that hold a handler at a chosen point, a
 * backend wrapper that counts calls, and a harness that stops every worker and closes every
 * registry after each test.
 */
import type { ChangeFeed, RegistryBackend } from "../../src/backend/port.js";
import type { RegistryEventName, RegistryEvents } from "../../src/events.js";
import { REGISTRY_EVENT_NAMES } from "../../src/events.js";
import type { TaskRegistry } from "../../src/registry.js";
import type { Worker, WorkHandler, WorkOptions } from "../../src/worker/worker.js";

/** The next `name` event matching `predicate`; rejects after `timeoutMs` (a hang guard). */
export function nextEvent<E extends RegistryEventName>(
  registry: TaskRegistry,
  name: E,
  predicate: (event: RegistryEvents[E]) => boolean = () => true,
  timeoutMs = 5000,
): Promise<RegistryEvents[E]> {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      off();
      reject(new Error(`no matching \`${name}\` event within ${timeoutMs} ms`));
    }, timeoutMs);
    const off = registry.on(name, (event) => {
      if (!predicate(event)) return;
      clearTimeout(timer);
      off();
      resolve(event);
    });
  });
}

/** Resolves with how task `id` ended (completed or failed for good); rejects after `timeoutMs`. */
export function settled(
  registry: TaskRegistry,
  id: string,
  timeoutMs = 10_000,
): Promise<"completed" | "failed"> {
  return new Promise((resolve, reject) => {
    const offs: (() => void)[] = [];
    const finish = (outcome: "completed" | "failed") => {
      clearTimeout(timer);
      for (const off of offs) off();
      resolve(outcome);
    };
    const timer = setTimeout(() => {
      for (const off of offs) off();
      reject(new Error(`task ${id} neither completed nor failed within ${timeoutMs} ms`));
    }, timeoutMs);
    offs.push(registry.on("completed", (e) => e.id === id && finish("completed")));
    offs.push(registry.on("failed", (e) => e.id === id && finish("failed")));
  });
}

/** Every event of task `id`, in emission order, from now on. */
export function recordEvents(
  registry: TaskRegistry,
  id?: () => string | undefined,
): { name: RegistryEventName; event: RegistryEvents[RegistryEventName] }[] {
  const seen: { name: RegistryEventName; event: RegistryEvents[RegistryEventName] }[] = [];
  for (const name of REGISTRY_EVENT_NAMES) {
    registry.on(name, (event) => {
      const wanted = id?.();
      if (wanted === undefined || event.id === wanted) seen.push({ name, event });
    });
  }
  return seen;
}

export interface Gate {
  readonly open: () => void;
  readonly opened: Promise<void>;
}

/** A promise someone else resolves. */
export function gate(): Gate {
  let open: () => void = () => undefined;
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  return { open, opened };
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** A backend method, or one of its change feed's (`changes.version`). */
export type Counted = keyof RegistryBackend | `changes.${keyof ChangeFeed}`;

export interface CountingBackend {
  readonly backend: RegistryBackend;
  /** Calls of `method` since the last reset. */
  calls(method: Counted): number;
  reset(): void;
  /** Resolves once `method` has been called `times` times since the last reset. */
  whenCalled(method: Counted, times?: number, timeoutMs?: number): Promise<void>;
}

/**
 * A Proxy over `inner` counting each method call, its change feed's included (methods run on
 * `inner`, for its #private fields). Past `maxCalls` calls of one method since the last reset,
 * calls reject: a worker spinning on a backend whose promises settle as microtasks would
 * otherwise starve every timer, the test's own timeout included, and hang instead of failing.
 */
export function countingBackend(inner: RegistryBackend, maxCalls = 5000): CountingBackend {
  const counts = new Map<string, number>();
  const waiters = new Set<() => void>();
  const counting = <T extends object>(target: T, prefix: string): T =>
    new Proxy(target, {
      get(target, property) {
        const value: unknown = Reflect.get(target, property, target);
        const name = `${prefix}${String(property)}`;
        if (name === "changes" && typeof value === "object" && value !== null) {
          return counting(value, "changes.");
        }
        if (typeof value !== "function") return value;
        return (...args: unknown[]) => {
          const count = (counts.get(name) ?? 0) + 1;
          counts.set(name, count);
          for (const check of [...waiters]) check();
          if (count > maxCalls) {
            return Promise.reject(new Error(`${name} called over ${maxCalls} times`));
          }
          return (value as (...a: unknown[]) => unknown).apply(target, args);
        };
      },
    });
  const backend = counting(inner, "");
  const calls = (method: Counted) => counts.get(method) ?? 0;
  return {
    backend,
    calls,
    reset: () => counts.clear(),
    whenCalled: (method, times = 1, timeoutMs = 5000) =>
      new Promise<void>((resolve, reject) => {
        const check = () => {
          if (calls(method) < times) return;
          waiters.delete(check);
          clearTimeout(timer);
          resolve();
        };
        const timer = setTimeout(() => {
          waiters.delete(check);
          reject(new Error(`${method} was not called ${times} times within ${timeoutMs} ms`));
        }, timeoutMs);
        waiters.add(check);
        check();
      }),
  };
}

/** Stops every worker it started and closes every registry it was given, after each test. */
export class Harness {
  readonly errors: unknown[] = [];
  readonly #registries: TaskRegistry[] = [];
  readonly #workers: Worker[] = [];
  readonly #gates: Gate[] = [];

  track(registry: TaskRegistry): TaskRegistry {
    this.#registries.push(registry);
    return registry;
  }

  /** `registry.work(...)`, with loop errors collected in `errors` instead of printed. */
  work(
    registry: TaskRegistry,
    kinds: string | readonly string[],
    handler: WorkHandler,
    options: WorkOptions = {},
  ): Worker {
    const worker = registry.work(kinds, handler, {
      onError: (error) => this.errors.push(error),
      ...options,
    });
    this.#workers.push(worker);
    return worker;
  }

  /** A gate opened at cleanup at the latest, so no handler is left hanging. */
  gate(): Gate {
    const g = gate();
    this.#gates.push(g);
    return g;
  }

  async cleanup(): Promise<void> {
    await Promise.all(this.#workers.splice(0).map((w) => w.stop({ timeoutMs: 100 })));
    for (const g of this.#gates.splice(0)) g.open();
    await Promise.all(this.#registries.splice(0).map((r) => r.close()));
    this.errors.length = 0;
  }
}

/** A u64 as the decoder returns it: a number while safe, a bigint above 2^53. */
export function u64(value: bigint): number | bigint {
  return value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

export const TIMESTAMP = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{3}|\.\d{6}|\.\d{9})?Z$/;
