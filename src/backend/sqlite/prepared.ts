/**
 * Kysely builds and types each SQL statement once; better-sqlite3 runs it as a prepared
 * statement. Values that vary per call are `param("name")` markers, bound by name at run time,
 * so a hot path never rebuilds or recompiles a query.
 */
import type BetterSqlite3 from "better-sqlite3";
import type { Compilable } from "kysely";

const MARKER = "\u0000cruxx-param:";

/** A placeholder for a value bound when the statement runs. */
export function param<T>(name: string): T {
  return `${MARKER}${name}` as T;
}

type Binder<P> = (values: P) => unknown[];

export class PreparedQuery<P extends object, R = unknown> {
  readonly #statement: BetterSqlite3.Statement;
  readonly #bind: Binder<P>;

  constructor(db: BetterSqlite3.Database, query: Compilable<R>) {
    const compiled = query.compile();
    this.#statement = db.prepare(compiled.sql);
    const slots = compiled.parameters.map((value) =>
      typeof value === "string" && value.startsWith(MARKER)
        ? { name: value.slice(MARKER.length) }
        : { value },
    );
    this.#bind = (values) =>
      slots.map((slot) => ("name" in slot ? values[slot.name as keyof P] : slot.value));
  }

  run(values: P): BetterSqlite3.RunResult {
    return this.#statement.run(...this.#bind(values));
  }

  get(values: P): R | undefined {
    return this.#statement.get(...this.#bind(values)) as R | undefined;
  }

  all(values: P): R[] {
    return this.#statement.all(...this.#bind(values)) as R[];
  }

  iterate(values: P): IterableIterator<R> {
    return this.#statement.iterate(...this.#bind(values)) as IterableIterator<R>;
  }
}
