/**
 * zod schemas of the cruxx-core wire types (serde JSON of the Rust structs).
 * They decode values produced by `parseJson`, where u64 may arrive as bigint and integral
 * floats as F64, and normalise them to plain typed values.
 */
import { z } from "zod";
import { CRUX_ID_PATTERN, type CruxId, TASK_ID_PATTERN, type TaskId } from "../ids.js";
import { F64, type Json, setOwn } from "./json.js";

export const TASK_STATUSES = ["pending", "running", "done", "failed"] as const;
export type TaskStatus = (typeof TASK_STATUSES)[number];

export const STEP_KINDS = ["plain", "delegation", "branch", "speculation"] as const;
export type StepKind = (typeof STEP_KINDS)[number];

export const STEP_STATUSES = ["ok", "err", "rejected", "skipped"] as const;
export type StepStatus = (typeof STEP_STATUSES)[number];

export const BUDGET_KINDS = ["tokens", "calls", "duration", "cost_cents", "combined"] as const;
export type BudgetKind = (typeof BUDGET_KINDS)[number];

const U32_MAX = 0xffff_ffff;
const U64_MAX = (1n << 64n) - 1n;

/** A Rust u64: a JS number while it is a safe integer, a bigint above 2^53. */
export type U64 = number | bigint;

export const taskIdSchema = z
  .string()
  .regex(TASK_ID_PATTERN, "expected `task_` followed by a 26-character ULID")
  .transform((s) => s as TaskId);
const cruxIdSchema = z
  .string()
  .regex(CRUX_ID_PATTERN, "expected `cruxx_` followed by a 26-character ULID")
  .transform((s) => s as CruxId);

const u32 = z.number().int().min(0).max(U32_MAX);

const u64Bigint = z
  .union([z.number().int().min(0).max(Number.MAX_SAFE_INTEGER), z.bigint().min(0n).max(U64_MAX)])
  .transform((v) => BigInt(v));
const u64 = u64Bigint.transform((v): U64 => (v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v));

/** f64 fields: an integral value such as `1.0` arrives as F64. */
const float = z
  .union([z.number(), z.instanceof(F64).transform((f) => f.value)])
  .pipe(z.number().refine(Number.isFinite, "expected a finite number"));
/** f32 fields: also finite once rounded to f32. */
const float32 = float.refine(
  (n) => Number.isFinite(Math.fround(n)),
  "expected a number within the f32 range",
);

const TIMESTAMP =
  /^\d{4}-(0[1-9]|1[0-2])-(0[1-9]|[12]\d|3[01])T([01]\d|2[0-3]):[0-5]\d:([0-5]\d|60)(\.\d{3}|\.\d{6}|\.\d{9})?Z$/;
/** RFC 3339 UTC with `Z` and 0, 3, 6 or 9 fractional digits, kept as text (Rust keeps nanoseconds). */
const timestampSchema = z
  .string()
  .regex(TIMESTAMP, "expected an RFC 3339 UTC timestamp ending in Z")
  .refine(isCalendarDate, "expected a date that exists");

/** 2023-02-29 matches the pattern but chrono cannot read it. */
function isCalendarDate(text: string): boolean {
  const year = Number(text.slice(0, 4));
  const month = Number(text.slice(5, 7));
  const day = Number(text.slice(8, 10));
  return new Date(Date.UTC(year, month - 1, day)).getUTCDate() === day;
}

/** Strings must have a UTF-8 form: serde_json cannot read a lone surrogate. */
const text = z.string().refine((s) => s.isWellFormed(), "expected text without lone surrogates");

/** Any JSON value; its JSON-ness is checked when it is encoded. */
const json = z.custom<Json>((v) => v !== undefined, "expected a JSON value");

/**
 * Step metadata: a plain object of JSON values, copied key by key. z.record assigns each key,
 * and assigning "__proto__" sets the copy's prototype instead: the entry would be lost.
 */
const metadata = z.unknown().transform((value, ctx): Record<string, Json> => {
  const proto: unknown =
    typeof value === "object" && value !== null && Object.getPrototypeOf(value);
  if (proto !== Object.prototype && proto !== null) {
    ctx.addIssue({ code: "custom", message: "expected an object" });
    return z.NEVER;
  }
  const record = value as Record<string, Json | undefined>;
  const out: Record<string, Json> = {};
  for (const key of Object.keys(record)) {
    const item = record[key];
    if (item === undefined) {
      ctx.addIssue({ code: "custom", message: "expected a JSON value", path: [key] });
      return z.NEVER;
    }
    setOwn(out, key, item);
  }
  return out;
});

export type CruxErr =
  | { readonly kind: "step_failed"; readonly step: string; readonly message: string }
  | {
      readonly kind: "low_confidence";
      readonly step: string;
      readonly score: number;
      readonly threshold: number;
    }
  | {
      readonly kind: "budget_exceeded";
      readonly budget_kind: BudgetKind;
      readonly limit: U64;
      readonly actual: U64;
    }
  | { readonly kind: "delegation"; readonly to: string; readonly source: CruxErr }
  | { readonly kind: "cancelled"; readonly reason: string }
  | {
      readonly kind: "replay_mismatch";
      readonly step: string;
      readonly expected: U64;
      readonly actual: U64;
    }
  | { readonly kind: "denied"; readonly step: string; readonly reason: string };

export const cruxErrSchema: z.ZodType<CruxErr, unknown> = z.lazy(() =>
  z.discriminatedUnion("kind", [
    z.object({ kind: z.literal("step_failed"), step: text, message: text }),
    z.object({
      kind: z.literal("low_confidence"),
      step: text,
      score: float,
      threshold: float,
    }),
    z.object({
      kind: z.literal("budget_exceeded"),
      budget_kind: z.enum(BUDGET_KINDS),
      limit: u64,
      actual: u64,
    }),
    z.object({ kind: z.literal("delegation"), to: text, source: cruxErrSchema }),
    z.object({ kind: z.literal("cancelled"), reason: text }),
    z.object({
      kind: z.literal("replay_mismatch"),
      step: text,
      expected: u64,
      actual: u64,
    }),
    z.object({ kind: z.literal("denied"), step: text, reason: text }),
  ]),
);

export const stepSchema = z.object({
  name: text,
  kind: z.enum(STEP_KINDS),
  status: z.enum(STEP_STATUSES),
  confidence: float32,
  started_at: timestampSchema,
  duration_ms: u64,
  input_hash: u64Bigint,
  content_hash: u64Bigint.nullable(),
  output: json.nullable(),
  error: text.nullable(),
  attempt: u32,
  // Not frozen, as `.readonly()` would: one holding a bigint is given a `toJSON` when handed out.
  events: z
    .array(json)
    .transform((events): readonly Json[] => events)
    .default([]),
  metadata: metadata.default({}),
});
export type Step = z.output<typeof stepSchema>;

/** A Rust `Result`: exactly `{"Ok": value}` or `{"Err": CruxErr}`. */
export type CruxValue = { readonly Ok: Json } | { readonly Err: CruxErr };
const cruxValueSchema: z.ZodType<CruxValue, unknown> = z.union([
  z.strictObject({ Ok: json }),
  z.strictObject({ Err: cruxErrSchema }),
]);

export interface Crux {
  readonly id: CruxId;
  readonly agent: string;
  readonly value: CruxValue;
  readonly steps: readonly Step[];
  readonly children: readonly Crux[];
  readonly started_at: string;
  readonly finished_at: string | null;
}

export const cruxSchema: z.ZodType<Crux, unknown> = z.lazy(() =>
  z.object({
    id: cruxIdSchema,
    agent: text,
    value: cruxValueSchema,
    steps: z.array(stepSchema).readonly(),
    children: z.array(cruxSchema).readonly(),
    started_at: timestampSchema,
    finished_at: timestampSchema.nullable(),
  }),
);

export const taskSchema = z.object({
  id: taskIdSchema,
  kind: text,
  status: z.enum(TASK_STATUSES),
  input: json,
  checkpoint: cruxSchema.nullable(),
  attempts: u32,
});
export type Task = z.output<typeof taskSchema>;
