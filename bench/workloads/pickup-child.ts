/**
 * The submitting process for W7: `node --import tsx pickup-child.ts '<PickupChildConfig JSON>'`.
 * It opens the registry, prints `ready`, and on `go` submits `count` tasks, one every 10–20 ms
 * (so the parent's worker is idle each time), each carrying the wall-clock time just before
 * its submit call. Then it prints `submitted` and exits.
 */
import { type Durability, openRegistry } from "../../src/index.js";
import { onStdinLines, sleep, wallClockMs } from "../util.js";

export interface PickupChildConfig {
  readonly path: string;
  readonly kind: string;
  readonly count: number;
  readonly durability: Durability;
}

const config = JSON.parse(process.argv[2] ?? "{}") as PickupChildConfig;
const registry = await openRegistry(config.path, { durability: config.durability });

async function submitAll(): Promise<void> {
  for (let i = 0; i < config.count; i++) {
    await sleep(10 + Math.random() * 10);
    await registry.submit(config.kind, { t: wallClockMs(), i });
  }
  await registry.close();
  process.stdout.write("submitted\n", () => process.exit(0));
}

onStdinLines((line) => {
  if (line === "go") {
    submitAll().catch((error) => {
      console.error(error);
      process.exit(1);
    });
  }
  if (line === "stop") process.exit(0);
});
process.stdout.write("ready\n");
