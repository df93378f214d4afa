import type { QueenEvent } from "@apiary/protocol";

const workerKey = (e: QueenEvent) => `${e.hiveId}/${e.workerId}`;

/**
 * One SSE subscriber's bounded queue. `worker.updated` is coalesced per
 * worker while queued (latest wins: the older one is dropped, so ids stay
 * increasing); when the queue is still full the subscriber has lagged: it
 * gets `stream.lagged` with the last id it was sent and is closed, so it can
 * resume from there. Pushing never blocks: ingest is never slowed by a slow
 * reader.
 *
 * With a coalescing window (`?coalesceMs=`) samples are held apart, one per
 * worker, latest wins, and go out at each window's end (release()): a
 * subscriber to 500,000 workers chooses its own rate, and what it holds is
 * bounded by the workers it follows, never by time, so held samples never
 * make it lag. A lifecycle event of a worker releases that worker's held
 * sample first, so nobody sees a sample after the exit it preceded.
 */
export class Subscriber {
	private queue: (QueenEvent | null)[] = [];
	private live = 0;
	private readonly updatedAt = new Map<string, number>();
	/** Coalescing window only: each worker's latest sample not yet released. */
	private readonly held: Map<string, QueenEvent> | null;
	private due = false;
	private readonly limit: number;
	private wake: (() => void) | null = null;
	lastSentId = 0;
	lagged = false;
	closed = false;
	coalesced = 0;

	constructor(limit: number, o: { window?: boolean } = {}) {
		this.limit = limit;
		this.held = o.window ? new Map() : null;
	}

	push(e: QueenEvent): void {
		if (this.closed || this.lagged) return;
		if (this.held && e.workerId) {
			const k = workerKey(e);
			if (e.type === "worker.updated") {
				if (this.held.has(k)) this.coalesced++;
				this.held.set(k, e);
				return;
			}
			const sample = this.held.get(k);
			if (sample) {
				this.held.delete(k);
				this.enqueue(sample);
			}
		}
		this.enqueue(e);
		this.wake?.();
	}

	private enqueue(e: QueenEvent): void {
		if (e.type === "worker.updated" && e.workerId) {
			const k = workerKey(e);
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
	}

	/** A coalescing window ended: the held samples go out with the next batch. */
	release(): void {
		if (!this.held || this.held.size === 0) return;
		this.due = true;
		this.wake?.();
	}

	/** Next batch to write (queued events in order, then released samples), waiting when empty; null once closed. */
	async next(): Promise<QueenEvent[] | null> {
		while (this.live === 0 && !this.due && !this.lagged && !this.closed) {
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
		if (this.due && this.held) {
			for (const e of this.held.values()) batch.push(e);
			this.held.clear();
			this.due = false;
		}
		return batch;
	}

	close(): void {
		this.closed = true;
		this.wake?.();
	}

	get depth(): number {
		return this.live;
	}

	/** Samples held for the window's end. */
	get holding(): number {
		return this.held?.size ?? 0;
	}
}
