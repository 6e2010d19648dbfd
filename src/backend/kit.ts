/**
 * The adapter kit: what a backend outside this package needs of the lifecycle to implement
 * the port — the transitions it applies, the selection rules its queries follow, and the
 * helpers for batches and quarantine — so that no rule is written twice.
 */
export {
  appendedLength,
  canAppend,
  claimTask,
  completeTask,
  cruxIdOf,
  fence,
  overwriteDocument,
  RUN_IN_PROGRESS,
  type RunChange,
  recordSteps,
  repairDocument,
  stepsInDocument,
  timestamp,
  withinBudget,
  withRun,
} from "../lifecycle.js";
export {
  claimOrder,
  idOrder,
  isDue,
  isSwept,
  kindMatches,
  sweepOrder,
  wakeTime,
} from "../selection.js";
export { changeEach, quarantinedError, spliceStored } from "./quarantine.js";
