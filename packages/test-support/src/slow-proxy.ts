import { createConnection, createServer, type Server, type Socket } from "node:net";

// A fault-injecting TCP proxy for the chaos tier (this kernel has no netem
// qdisc, and Debian has no toxiproxy): every chunk, each way, is delivered
// `latencyMs` after it arrived, and a `loss` share of them another
// `retransmitMs` later, as a lost segment costs TCP a retransmission (the
// share exact over every 1/loss chunks, which ones seeded: a short run
// still sees its losses). Order
// is kept per direction (a late chunk holds back those behind it, as TCP's
// in-order delivery does); no byte is dropped or changed, since a proxy
// above TCP cannot lose bytes without breaking the stream it carries.
// Seeded, so a failing run can be replayed.

export interface SlowProxy {
	port: number;
	/** Chunks delayed, and of those delayed again as lost. */
	stats: { chunks: number; lost: number };
	/**
	 * Every connection open now forwards nothing more, either way, and stays open: a peer cut off
	 * by the network answers nothing and closes nothing. Connections made later are carried as before.
	 */
	silence(): void;
	close(): Promise<void>;
}

/** A small deterministic generator (mulberry32). */
export function seeded(seed: number): () => number {
	let a = seed >>> 0;
	return () => {
		a = (a + 0x6d2b79f5) >>> 0;
		let t = a;
		t = Math.imul(t ^ (t >>> 15), t | 1);
		t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
		return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
	};
}

export async function startSlowProxy(o: {
	listenHost: string;
	target: { host: string; port: number };
	latencyMs: number;
	loss: number;
	retransmitMs?: number;
	seed: number;
}): Promise<SlowProxy> {
	const random = seeded(o.seed);
	const stats = { chunks: 0, lost: 0 };
	/** Losses owed: one is taken each time it reaches 1 (a seeded start, then exactly `loss` a chunk). */
	let owed = random();
	const sockets = new Set<Socket>();
	const silenced = new WeakSet<Socket>();
	/** One direction: chunks leave in order, each at its own due time or after the one before it. */
	const pipe = (from: Socket, to: Socket) => {
		let lastDue = 0;
		from.on("data", (chunk) => {
			if (silenced.has(from)) return;
			stats.chunks++;
			owed += o.loss;
			const lost = owed >= 1;
			if (lost) {
				owed -= 1;
				stats.lost++;
			}
			const due = Math.max(performance.now() + o.latencyMs + (lost ? (o.retransmitMs ?? 3 * o.latencyMs) : 0), lastDue);
			lastDue = due;
			setTimeout(() => {
				if (!to.destroyed && !silenced.has(to)) to.write(chunk);
			}, due - performance.now());
		});
		from.on("end", () => !silenced.has(from) && setTimeout(() => to.end(), Math.max(0, lastDue - performance.now())));
	};
	const server: Server = createServer((client) => {
		const upstream = createConnection(o.target);
		for (const s of [client, upstream]) {
			sockets.add(s);
			s.on("error", () => {
				client.destroy();
				upstream.destroy();
			});
			s.on("close", () => sockets.delete(s));
		}
		pipe(client, upstream);
		pipe(upstream, client);
	});
	await new Promise<void>((resolve, reject) => {
		server.once("error", reject);
		server.listen(0, o.listenHost, () => resolve());
	});
	return {
		port: (server.address() as { port: number }).port,
		stats,
		silence() {
			for (const s of sockets) silenced.add(s);
		},
		async close() {
			for (const s of sockets) s.destroy();
			await new Promise((r) => server.close(() => r(undefined)));
		},
	};
}
