import type { RegistryBackend } from "../../src/backend/port.js";

/** The seed's FailingCasBackend: the first `failures` CAS calls lose without writing. */
export function failingCas(inner: RegistryBackend, failures: number): RegistryBackend {
  let failuresLeft = failures;
  const cas: RegistryBackend["cas"] = async (...args) => {
    if (failuresLeft > 0) {
      failuresLeft--;
      return false;
    }
    return inner.cas(...args);
  };
  return new Proxy(inner, {
    get(target, property) {
      if (property === "cas") return cas;
      const value: unknown = Reflect.get(target, property, target);
      return typeof value === "function" ? value.bind(target) : value;
    },
  });
}
