/**
 * Child process for takeover.test.ts, started as
 * `node --import tsx takeover-child.ts '<ChildConfig JSON>'`: it claims up to `limit` tasks of
 * `kind` under short leases, prints `claimed <n>`, and then hangs, holding them, until the
 * parent kills it.
 */
import { openRegistry } from "../../src/open.js";

export interface ChildConfig {
  readonly path: string;
  readonly kind: string;
  readonly limit: number;
  readonly leaseMs: number;
}

const configText = process.argv[2];
if (configText === undefined) {
  process.stderr.write("usage: takeover-child.ts '<ChildConfig JSON>'\n");
  process.exit(2);
}
const config = JSON.parse(configText) as ChildConfig;
const registry = await openRegistry(config.path);
const claimed = await registry.claimMany(config.kind, {
  owner: `doomed:${process.pid}`,
  leaseMs: config.leaseMs,
  limit: config.limit,
});
process.stdout.write(`claimed ${claimed.length}\n`);
setInterval(() => undefined, 60_000); // stay alive, never heartbeating, until killed
