import { EventsQuery, type QueenEvent } from "@apiary/protocol";
import type {} from "@fastify/sse";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { EventsGone, eventJson, isDurable } from "../events.ts";
import { matches, parseTypes } from "../filter.ts";
import type { Principal } from "../auth/authorize.ts";
import type { Credentials } from "../auth/credentials.ts";
import { type Registry, RegistryError } from "../registry.ts";
import { Subscriber } from "../subscriber.ts";

export interface EventsRouteOptions {
	registry: Registry;
	/** A stream opened with a token is closed when the token is revoked or expires. */
	credentials?: Credentials;
	queueLimit: number;
	/** A subscriber was closed for lagging; `dropped` events were queued for it. */
	onLag?: (dropped: number) => void;
}

const LAG_GRACE_MS = 10_000;

/** GET /v1/events: the SSE stream (snapshot or replay first, then live; bounded, coalescing, lag-closing; samples at a chosen rate with ?coalesceMs). */
export const eventsRoutes: FastifyPluginAsyncTypebox<EventsRouteOptions> = async (app, o) => {
	const { registry } = o;
	const { events } = registry;
	// Events arrive already serialized (eventJson): the text goes out as it is.
	const serializer = (d: unknown) => (typeof d === "string" ? d : JSON.stringify(d));
	app.get("/v1/events", { config: { role: "read" }, sse: { kind: "only", serializer }, schema: { querystring: EventsQuery } }, async (req, reply) => {
		const q = req.query;
		const header = req.headers["last-event-id"];
		// A resume id that is not one is refused like a bad `since`, never taken as none (a silent fresh start).
		if (header !== undefined && (typeof header !== "string" || !/^\d{1,15}$/.test(header)))
			throw new RegistryError(400, `headers['last-event-id'] must be an event id (1-15 digits), got ${JSON.stringify(String(header).slice(0, 40))}`);
		const resumeFrom = header !== undefined ? Number(header) : q.since !== undefined ? Number(q.since) : null;
		const filter = { types: parseTypes(q.types), hive: q.hive ?? null, worker: q.worker ?? null };
		const windowMs = q.coalesceMs === undefined ? null : Number(q.coalesceMs);
		const sub = new Subscriber(o.queueLimit, { window: windowMs !== null });
		const sse = reply.sse!;
		const raw = reply.raw;
		let lagHandled = false;
		const lag = () => {
			if (lagHandled) return;
			lagHandled = true;
			o.onLag?.(sub.depth);
			// The socket may be full; the notice is small and goes after what is buffered.
			const notice = {
				type: "stream.lagged",
				at: new Date().toISOString(),
				hiveId: null,
				workerId: null,
				data: { lastEventId: sub.lastSentId, reason: "this subscriber fell behind; resume with Last-Event-ID" },
			};
			raw.write(`event: stream.lagged\ndata: ${JSON.stringify(notice)}\n\n`);
			raw.end();
			// A reader that is slow but alive gets the notice; a dead one is cut off.
			setTimeout(() => raw.destroy(), LAG_GRACE_MS).unref();
			sub.close();
		};
		// Subscribing and taking what the replay or snapshot covers happen in
		// one synchronous step: every event the queue gets is newer than them,
		// so nothing is sent twice or skipped (a stats sample numbered at commit
		// carries the id of the event before it, so ids alone cannot tell).
		const unsubscribe = events.subscribe((e) => {
			if (!matches(filter, e)) return;
			sub.push(e);
			if (sub.lagged) lag();
		});
		const head = events.lastId;
		const oldest = events.oldestRetained();
		const outOfLog = resumeFrom !== null && (resumeFrom > head || resumeFrom + 1 < oldest);
		let snapshot = resumeFrom === null || outOfLog ? registry.snapshot() : null;
		const samples = resumeFrom !== null && !outOfLog ? registry.samplesAfter(resumeFrom).filter((e) => matches(filter, e)) : [];
		/** Set when a snapshot had to be taken after subscribing: what the queue holds up to it is in the snapshot already. */
		let inSnapshotUpTo: number | null = null;
		sse.keepAlive();
		const principal = (req as unknown as { principal?: Principal | null }).principal ?? null;
		const untrack = principal && o.credentials ? o.credentials.track(principal, () => raw.destroy()) : null;
		const windowTimer = windowMs === null ? null : setInterval(() => sub.release(), windowMs);
		sse.onClose(() => {
			if (windowTimer) clearInterval(windowTimer);
			untrack?.();
			unsubscribe();
			sub.close();
		});
		// A sample carries the id of the last event published before it; one
		// held for a window goes out after newer events, so its SSE id is the
		// subscriber's cursor: Last-Event-ID never goes back.
		const send = async (e: QueenEvent) => {
			const id = Math.max(e.id, sub.lastSentId);
			await sse.send({ id: String(id), event: e.type, data: eventJson(e) });
			sub.lastSentId = id;
		};
		const sendSnapshot = async (at: number) => {
			const snap = { id: at, type: "snapshot", at: new Date().toISOString(), hiveId: null, workerId: null, data: snapshot };
			await sse.send({ id: String(at), event: "snapshot", data: snap });
			sub.lastSentId = at;
		};
		// A cursor from the future (a restore from backup) or older than the
		// log keeps: say so at once and start over from a snapshot, never a
		// silent wait or a silent gap.
		const reset = async (at: number, reason: string, oldestRetained: number) => {
			const data = { reason, askedFor: resumeFrom, lastEventId: at, oldestRetained };
			const e = { id: at, type: "stream.reset", at: new Date().toISOString(), hiveId: null, workerId: null, data };
			await sse.send({ id: String(at), event: "stream.reset", data: e });
			await sendSnapshot(at);
		};
		// Headers go out at once, whether or not an event follows soon (a
		// resume at the head would otherwise wait for the next change).
		sse.sendHeaders();
		raw.flushHeaders();
		try {
			if (outOfLog) {
				const reason =
					resumeFrom > head ? "the resume id is newer than this queen's log (restored from a backup?)" : "the resume id is older than the log keeps";
				await reset(head, reason, oldest);
			} else if (resumeFrom !== null) {
				// Replay the lifecycle log after the resume point up to the head,
				// each worker's latest sample merged in at its id, then go live.
				let cursor = resumeFrom;
				let s = 0;
				try {
					for (;;) {
						const batch = await events.since(cursor, 2000, head);
						for (const e of batch) {
							while (s < samples.length && samples[s]!.id < e.id) await send(samples[s++]!);
							cursor = e.id;
							if (matches(filter, e)) await send(e);
							if (sub.closed) return;
						}
						if (batch.length < 2000) break;
					}
					while (s < samples.length && !sub.closed) await send(samples[s++]!);
				} catch (err) {
					if (!(err instanceof EventsGone)) throw err;
					// Pruned meanwhile (by another queen): as above, from a snapshot taken now.
					snapshot = registry.snapshot();
					inSnapshotUpTo = events.lastId;
					await reset(inSnapshotUpTo, "the resume id is older than the log keeps", events.oldestRetained());
				}
			} else {
				await sendSnapshot(head);
			}
			for (;;) {
				const batch = await sub.next();
				if (!batch) return;
				for (const e of batch) {
					// Numbered at commit, a sample carrying the snapshot's id came after it.
					if (inSnapshotUpTo !== null && (e.id < inSnapshotUpTo || (e.id === inSnapshotUpTo && isDurable(e.type)))) continue;
					await send(e);
					if (sub.closed) return;
				}
			}
		} catch {
			// the client went away mid-write
		} finally {
			if (windowTimer) clearInterval(windowTimer);
			unsubscribe();
		}
	});
};
