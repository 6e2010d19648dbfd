import { type Kysely, sql } from "kysely";

/**
 * A running task without a lease (set running through the seed's API before updateStatus
 * gave such a task a lease) was never swept: nothing could ever take it back. It gets the
 * lease updateStatus gives now (owner "updateStatus", as of this migration), already expired,
 * so the next sweep or claim returns it to its queue.
 */
export async function up(db: Kysely<unknown>): Promise<void> {
  await sql`update tasks
    set lease_owner = 'updateStatus', lease_token = lower(hex(randomblob(16))), lease_expires_at = 0
    where status = 'running' and lease_token is null`.execute(db);
}

/** The schema is unchanged; the leases stay, as any lease would. */
export async function down(_db: Kysely<unknown>): Promise<void> {}
