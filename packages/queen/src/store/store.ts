import type { PlacementAnswer } from "@apiary/protocol";
import type { AuditTable } from "./audit.ts";
import type { TokenTable } from "./tokens.ts";
import type { ClaimTable } from "./claims.ts";
import type { EventTable } from "./events.ts";
import type { ExitTable } from "./exits.ts";
import type { GpuTable } from "./gpus.ts";
import type { HiveTable } from "./hives.ts";
import type { RunTable } from "./runs.ts";
import type { ShardRunTable } from "./shard-runs.ts";
import type { WorkerTable } from "./workers.ts";

/**
 * The queen's durable state, one table interface per module with typed rows.
 * SQLite (sqlite.ts) is the embedded implementation; a server database
 * implements the same interface.
 */
export interface QueenStore {
	readonly hives: HiveTable;
	readonly workers: WorkerTable;
	readonly exits: ExitTable;
	readonly gpus: GpuTable;
	readonly claims: ClaimTable;
	readonly events: EventTable;
	/** Right-sizing's run history. */
	readonly runs: RunTable;
	/** Sharded runs (queen run --shards). */
	readonly shardRuns: ShardRunTable;
	/** Credentials (hashed) with their roles. */
	readonly tokens: TokenTable;
	/** Who did, or was refused, what. */
	readonly audit: AuditTable;
	/** Runs fn in one transaction (nested calls join the outer one); rolls back if it throws. */
	tx<T>(fn: () => T): T;
	/** Several queens share this store (PostgreSQL): see docs/several-queens.md. */
	readonly shared?: boolean;
	/** Shared: runs fn under a database-wide lock, caught up with the other queens, until its changes are committed. */
	withLock?<T>(key: number, fn: () => T | Promise<T>, tryOnly?: boolean): Promise<T | null>;
	/** Several queens: the answer a placement with this idempotency key got on any queen. */
	placementAnswer?(key: string): Promise<KeyedPlacement | null>;
	/** …kept with its key (inside a transaction); an answer replaces a doubt, never another answer. */
	savePlacement?(key: string, p: KeyedPlacement): void;
	/** Several queens: the placements waiting on every queen, in one order fleet-wide. */
	readonly waiters?: SharedWaiters;
	/** SQLite: transactions committed with writes so far (a store failure is over only once one commits). */
	readonly writeCommits?: number;
	/** Resolves once every transaction run so far is durable (at once on SQLite, whose commits are synchronous). */
	durable(): Promise<void>;
	close(): void | Promise<void>;
}

/** The fleet's wait list (PostgreSQL): each queen's waiters, by a sequence every queen's share. */
export interface SharedWaiters {
	/** Queues one of this queen's waiters; its place in the fleet's order. */
	add(id: string, want: unknown): Promise<number>;
	/** These left (placed, gave up, or their client went away). */
	remove(seqs: number[]): Promise<void>;
	/** The other live queens' waiters, in order. */
	others(): Promise<{ seq: number; id: string; want: unknown }[]>;
	/** Removes this queen's rows up to `upTo` that are not `live` (a leave that failed, a join whose answer was lost). */
	keepOnly(live: number[], upTo: number): Promise<number>;
}

/** What an idempotency key stands for: its request's hash and its answer, or the spawn in doubt since `doubtAt` (ms). */
export interface KeyedPlacement {
	answer: PlacementAnswer;
	bodyHash: string | null;
	doubtAt: number | null;
}
