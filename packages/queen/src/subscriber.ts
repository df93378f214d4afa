import type { QueenEvent } from "@apiary/protocol";

/**
 * One SSE subscriber's bounded queue. `worker.updated` is coalesced per
 * worker while queued (latest wins: the older one is dropped, so ids stay
 * increasing); when the queue is still full the subscriber has lagged: it
 * gets `stream.lagged` with the last id it was sent and is closed, so it can
 * resume from there. Pushing never blocks: ingest is never slowed by a slow
 * reader.
 */
export class Subscriber {
	private queue: (QueenEvent | null)[] = [];
	private live = 0;
	private readonly updatedAt = new Map<string, number>();
	private readonly limit: number;
	private wake: (() => void) | null = null;
	lastSentId = 0;
	lagged = false;
	closed = false;
	coalesced = 0;

	constructor(limit: number) {
		this.limit = limit;
	}

	push(e: QueenEvent): void {
		if (this.closed || this.lagged) return;
		if (e.type === "worker.updated" && e.workerId) {
			const k = `${e.hiveId}/${e.workerId}`;
			const at = this.updatedAt.get(k);
			if (at !== undefined) {
				this.queue[at] = null;
				this.live--;
				this.coalesced++;
			}
			this.updatedAt.set(k, this.queue.length);
		}
		if (this.live >= this.limit) {
			this.lagged = true;
		} else {
			this.queue.push(e);
			this.live++;
		}
		this.wake?.();
	}

	/** Next batch to write (ids increasing), waiting when empty; null once closed. */
	async next(): Promise<QueenEvent[] | null> {
		while (this.live === 0 && !this.lagged && !this.closed) {
			await new Promise<void>((r) => {
				this.wake = r;
			});
			this.wake = null;
		}
		if (this.closed) return null;
		const batch = this.queue.filter((e): e is QueenEvent => e !== null);
		this.queue = [];
		this.live = 0;
		this.updatedAt.clear();
		return batch;
	}

	close(): void {
		this.closed = true;
		this.wake?.();
	}

	get depth(): number {
		return this.live;
	}
}
