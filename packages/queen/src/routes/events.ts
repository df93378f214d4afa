import { EventsQuery, type QueenEvent } from "@apiary/protocol";
import type {} from "@fastify/sse";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { eventJson } from "../events.ts";
import { matches, parseTypes } from "../filter.ts";
import type { Registry } from "../registry.ts";
import { Subscriber } from "../subscriber.ts";

export interface EventsRouteOptions {
	registry: Registry;
	queueLimit: number;
	/** A subscriber was closed for lagging; `dropped` events were queued for it. */
	onLag?: (dropped: number) => void;
}

const LAG_GRACE_MS = 10_000;

/** GET /v1/events: the SSE stream (snapshot or replay first, then live; bounded, coalescing, lag-closing). */
export const eventsRoutes: FastifyPluginAsyncTypebox<EventsRouteOptions> = async (app, o) => {
	const { registry } = o;
	const { events } = registry;
	// Events arrive already serialized (eventJson): the text goes out as it is.
	const serializer = (d: unknown) => (typeof d === "string" ? d : JSON.stringify(d));
	app.get("/v1/events", { sse: { kind: "only", serializer }, schema: { querystring: EventsQuery } }, async (req, reply) => {
		const q = req.query;
		const header = req.headers["last-event-id"];
		const resumeFrom = typeof header === "string" && /^\d{1,15}$/.test(header) ? Number(header) : q.since !== undefined ? Number(q.since) : null;
		const filter = { types: parseTypes(q.types), hive: q.hive ?? null, worker: q.worker ?? null };
		const sub = new Subscriber(o.queueLimit);
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
		const unsubscribe = events.subscribe((e) => {
			if (!matches(filter, e)) return;
			sub.push(e);
			if (sub.lagged) lag();
		});
		sse.keepAlive();
		sse.onClose(() => {
			unsubscribe();
			sub.close();
		});
		const send = async (e: QueenEvent) => {
			await sse.send({ id: String(e.id), event: e.type, data: eventJson(e) });
			sub.lastSentId = e.id;
		};
		const sendSnapshot = async () => {
			const at = events.lastId;
			const snap = { id: at, type: "snapshot", at: new Date().toISOString(), hiveId: null, workerId: null, data: registry.snapshot() };
			await sse.send({ id: String(at), event: "snapshot", data: snap });
			sub.lastSentId = at;
			return at;
		};
		// Headers go out at once, whether or not an event follows soon (a
		// resume at the head would otherwise wait for the next change).
		sse.sendHeaders();
		raw.flushHeaders();
		let cursor: number;
		try {
			const head = events.lastId;
			const oldest = events.oldestRetained();
			if (resumeFrom !== null && (resumeFrom > head || resumeFrom + 1 < oldest)) {
				// A cursor from the future (a restore from backup) or older than the
				// log keeps: say so at once and start over from a snapshot, never a
				// silent wait or a silent gap.
				const reason =
					resumeFrom > head ? "the resume id is newer than this queen's log (restored from a backup?)" : "the resume id is older than the log keeps";
				const reset = {
					id: head,
					type: "stream.reset",
					at: new Date().toISOString(),
					hiveId: null,
					workerId: null,
					data: { reason, askedFor: resumeFrom, lastEventId: head, oldestRetained: oldest },
				};
				await sse.send({ id: String(head), event: "stream.reset", data: reset });
				cursor = await sendSnapshot();
			} else if (resumeFrom !== null) {
				// Replay the persisted log after the resume point, then go live.
				cursor = resumeFrom;
				for (;;) {
					const batch = await events.since(cursor, 2000);
					for (const e of batch) {
						cursor = e.id;
						if (matches(filter, e)) await send(e);
						if (sub.closed) return;
					}
					if (batch.length < 2000) break;
				}
			} else {
				cursor = await sendSnapshot();
			}
			for (;;) {
				const batch = await sub.next();
				if (!batch) return;
				for (const e of batch) {
					if (e.id <= cursor) continue; // already replayed
					await send(e);
					if (sub.closed) return;
				}
			}
		} catch {
			// the client went away mid-write
		} finally {
			unsubscribe();
		}
	});
};
