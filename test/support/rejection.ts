import { expect } from "vitest";

/** What a refused call carries: every RegistryError has a code; validation ones a path. */
export interface Refusal {
  readonly code?: unknown;
  readonly path?: unknown;
  readonly message?: unknown;
}

/** The rejection of `promise`; a fulfilment fails the test. */
export function rejection(promise: Promise<unknown>): Promise<Refusal> {
  return promise.then(
    (value) => {
      throw new Error(`expected a rejection, got ${String(value)}`);
    },
    (error: unknown) => error as Refusal,
  );
}

/** `promise` rejects with a RegistryError of `code`. */
export async function expectCode(promise: Promise<unknown>, code: string): Promise<void> {
  expect((await rejection(promise)).code, `expected ${code}`).toBe(code);
}
