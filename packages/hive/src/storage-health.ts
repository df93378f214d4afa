import { messageOf } from "@apiary/kit/errors";
import type { StorageStatus } from "@apiary/protocol";

/**
 * Whether the hive can write its state dir. A failed write (full disk, I/O
 * error) marks it failing until every record kept in memory meanwhile has
 * been written; while failing the hive refuses new workers (507).
 */
export class StorageHealth {
	/** Ids whose records could not be written yet. */
	readonly pending = new Set<string>();
	private error: string | null = null;
	private since: string | null = null;
	private readonly log: (msg: string, extra?: object) => void;
	private readonly where: string;
	private readonly wall: () => number;

	constructor(where: string, wall: () => number, log: (msg: string, extra?: object) => void) {
		this.where = where;
		this.wall = wall;
		this.log = log;
	}

	get failing(): boolean {
		return this.error !== null;
	}

	/** A record write failed: keep `id` pending and say so once per episode. */
	failed(id: string | null, err: unknown): void {
		if (id !== null) this.pending.add(id);
		if (this.error === null) {
			this.since = new Date(this.wall()).toISOString();
			this.log("cannot write the state dir: keeping records in memory and refusing new workers until it can", { stateDir: this.where, err: messageOf(err) });
		}
		this.error = messageOf(err);
	}

	/** A record was written: once nothing is pending, the episode is over. */
	written(id: string): void {
		this.pending.delete(id);
		if (this.pending.size === 0 && this.error !== null) {
			this.log("the state dir is writable again", { stateDir: this.where, after: this.since });
			this.error = null;
			this.since = null;
		}
	}

	/** Why a spawn is refused while failing. */
	refusal(): string {
		return `the state dir ${this.where} cannot be written (${this.error}) since ${this.since}: new workers are refused until it can`;
	}

	status(): StorageStatus {
		return { ok: this.error === null, error: this.error, since: this.since, pendingRecords: this.pending.size };
	}
}
