import { type GpuInfo, type HelloMessage, packStats, type QueenMessage, type WorkerInfo } from "@apiary/protocol";
import WebSocket from "ws";
import { gpu, stats, worker } from "./fake-hive.ts";

// The fleet simulator (issue #23), as kubemark's hollow nodes and Nomad's
// nodesim are for theirs: many hives in one process, each speaking the real
// socket protocol (hello, heartbeats at the interval the queen tells it,
// spawns and exits at a churn rate, answers to the queen's commands). What
// makes 10,000 hives fit one core: one timer for the whole fleet; each
// hive's workers encoded once per change (a heartbeat patches in its seq and
// time); and a zero masking key, which ws skips, handing the string to the
// socket's write as it is (no Buffer per frame, no XOR of every byte: masking
// guards against proxies' cache poisoning, which a loopback bench has none
// of). A tick then costs a concatenation and the write, most of it the kernel's.

export interface SimOptions {
	/** Queen base URLs (http[s]://…); hive i dials queens[i % n] first, the next one when dropped. */
	queens: string[];
	hives: number;
	/** Running workers per hive (kept constant: each exit is followed by a spawn). */
	workers: number;
	seconds: number;
	/** Worker exits per second across the fleet, each replaced by a new worker at once. */
	churn: number;
	/** GPUs per hive (the queen can place on them). */
	gpus?: number;
	token?: string;
	ca?: Buffer;
	/** Hive ids are PREFIX0…PREFIXn-1. */
	prefix?: string;
	/** Sockets opening at once while the fleet connects (a SYN flood is not what is measured). */
	dialConcurrency?: number;
	/** The hive's own sampling interval: it sends at this or the told interval, whichever is longer. */
	tickMs?: number;
	/**
	 * The measured window starts once this settles too (after the join): a
	 * bench that waits for the fleet to be ready at every queen starts it
	 * then, not while the queens still take the join in.
	 */
	windowAfter?: Promise<unknown>;
	/** Called when the window ends, before the fleet says bye (what a bench reads of the queens then is not the leave's). */
	beforeBye?: () => Promise<void>;
	/** Called whenever a hive is told a new interval (ms, 0 = every tick): when a fleet was slowed and sped up again is read from it. */
	onTold?: (hive: string, ms: number) => void;
}

export interface SimReport {
	hives: number;
	workersPerHive: number;
	seconds: number;
	/** Hives welcomed at least once, and at the end still connected. */
	welcomed: number;
	connectedAtEnd: number;
	/** Hives that joined within the first SimOptions.seconds, how long until the last one did. */
	joinMs: number | null;
	heartbeats: Latency;
	/** Heartbeats due but not sent, the hive's last message not yet gone from its socket (the queen not reading it). */
	heartbeatsHeld: number;
	/** worker.spawned and worker.exited events, sent at once whatever the interval. */
	lifecycle: Latency;
	/** Intervals the queens told (ms, 0 = every tick) → how many hives were last told it. */
	intervals: Record<string, number>;
	/** Refusals and drops: `http 401`, `close 4409`… → count. */
	refusals: Record<string, number>;
	/** Commands the queens sent, by op. */
	commands: Record<string, number>;
	reconnects: number;
	/**
	 * This process's CPU (all of it: in a bench it includes whatever else
	 * the process runs): seconds until the measured window began (the join),
	 * and cores used during the window. What says the simulator, not the
	 * queen, was the limit.
	 */
	cpu: { joinSeconds: number; windowCores: number };
}

export interface Latency {
	sent: number;
	acked: number;
	p50Ms: number | null;
	p99Ms: number | null;
	maxMs: number | null;
}

/** One simulated hive: its workers, its socket, what it has sent and not had acked. */
class SimHive {
	ws: WebSocket | null = null;
	open = false;
	welcomed = false;
	paceMs = 0;
	nextAt = 0;
	queenIndex: number;
	credential: string | null = null;
	seq = 0;
	/** seq → [sent at, lifecycle?] */
	readonly inFlight = new Map<number, [number, boolean]>();
	readonly workers = new Map<string, WorkerInfo>();
	/** Exited workers the queen has not acked yet: sent in full in every heartbeat until it does. */
	readonly unacked = new Map<number, WorkerInfo>();
	/** Workers described in full on this connection: later heartbeats send their ticks. */
	readonly announced = new Set<string>();
	private encoded: string | null = null;
	private spawned = 0;
	readonly hello: string;
	private readonly head: string;
	private readonly gpuJson: string;

	readonly id: string;

	constructor(id: string, queenIndex: number, gpus: GpuInfo[]) {
		this.id = id;
		this.queenIndex = queenIndex;
		const hello: HelloMessage = {
			type: "hello",
			hiveId: id,
			instanceId: `sim-${id}`,
			version: "simulated",
			host: { hostname: id, os: "linux", kernel: "6.1", arch: "x64", cpuModel: "simulated", cores: 64, memoryBytes: 2 ** 38 },
			driver: { name: "v2", enforced: true, root: `/sys/fs/cgroup/apiary-${id}`, reason: "simulated" },
			gpus,
			labels: { simulated: "true" },
		};
		this.hello = JSON.stringify(hello);
		this.head = `"hiveId":${JSON.stringify(id)},"instanceId":${JSON.stringify(`sim-${id}`)},"tickMs":0.3,"driver":${JSON.stringify(hello.driver)}`;
		this.gpuJson = JSON.stringify({ state: "ok", message: null, ageMs: 5, gpus });
	}

	newWorker(over: Partial<WorkerInfo> = {}): WorkerInfo {
		const w = worker(`${this.id}-w${this.spawned++}`, {
			startedAt: new Date().toISOString(),
			pid: 1000 + this.spawned,
			labels: { simulated: "true" },
			...over,
		});
		this.workers.set(w.id, w);
		this.encoded = null;
		return w;
	}

	/** Ends worker `id` (exit code 0, or killed by the queen): it is reported in full until acked. */
	end(id: string, killed: boolean): WorkerInfo | null {
		const w = this.workers.get(id);
		if (!w) return null;
		this.workers.delete(id);
		this.encoded = null;
		const endedAt = new Date();
		const ended: WorkerInfo = {
			...w,
			state: "exited",
			exit: {
				exitCode: killed ? null : 0,
				signal: killed ? "SIGTERM" : null,
				reason: killed ? "killed" : "exited",
				message: null,
				startedAt: w.startedAt,
				endedAt: endedAt.toISOString(),
				durationMs: endedAt.getTime() - Date.parse(w.startedAt),
				peakMemoryBytes: 1 << 27,
				oomKilled: false,
			},
		};
		return ended;
	}

	reconnected(): void {
		this.announced.clear();
		this.inFlight.clear();
		this.encoded = null;
		this.paceMs = 0;
		this.nextAt = 0;
	}

	/** The heartbeat with sequence `seq`: the workers part is encoded once per change. */
	heartbeat(seq: number): string {
		if (this.encoded === null) {
			const s = packStats(stats(Date.now()));
			const parts: string[] = [];
			for (const w of this.workers.values()) {
				if (this.announced.has(w.id)) parts.push(JSON.stringify({ id: w.id, state: "running", startedAt: w.startedAt, pid: w.pid, s }));
				else {
					parts.push(JSON.stringify(w));
					this.announced.add(w.id);
				}
			}
			for (const w of this.unacked.values()) parts.push(JSON.stringify(w));
			this.encoded = `[${parts.join(",")}]`;
		}
		const t = new Date().toISOString();
		return `{"type":"heartbeat","seq":${seq},"snapshot":{${this.head},"seq":${seq},"takenAt":"${t}","workers":${this.encoded},"gpu":${this.gpuJson}}}`;
	}

	dirty(): void {
		this.encoded = null;
	}
}

/** A zero masking key: ws then leaves the payload as it is instead of XORing every byte. */
const zeroMask = (mask: Buffer) => {
	mask.fill(0);
};

const pct = (xs: number[], p: number): number | null => {
	if (xs.length === 0) return null;
	const s = [...xs].sort((a, b) => a - b);
	return Math.round(s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]! * 10) / 10;
};
const latency = (sent: number, lat: number[]): Latency => ({
	sent,
	acked: lat.length,
	p50Ms: pct(lat, 50),
	p99Ms: pct(lat, 99),
	maxMs: lat.length === 0 ? null : Math.round(Math.max(...lat) * 10) / 10,
});

/** Runs the fleet for `o.seconds` after it has joined (at most as long again to join), then says bye and reports. */
export async function simulate(o: SimOptions, log: (s: string) => void = () => {}): Promise<SimReport> {
	const tickMs = o.tickMs ?? 1000;
	const prefix = o.prefix ?? "sim-";
	// GPU UUIDs unique per hive and per prefix (two simulators on one queen), in nvidia-smi's hex form.
	let tag = 0;
	for (const c of prefix) tag = (tag * 31 + c.charCodeAt(0)) >>> 0;
	const uuid = (hive: number, index: number) =>
		`GPU-${tag.toString(16).padStart(8, "0")}-0000-4000-8000-${(hive * 256 + index).toString(16).padStart(12, "0")}`;
	const fleet = Array.from({ length: o.hives }, (_, i) => {
		const gpus = Array.from({ length: o.gpus ?? 2 }, (_, g) => gpu(g, { uuid: uuid(i, g) }));
		const h = new SimHive(`${prefix}${i}`, i % o.queens.length, gpus);
		for (let j = 0; j < o.workers; j++) h.newWorker();
		return h;
	});
	const hbLat: number[] = [];
	const lcLat: number[] = [];
	let hbSent = 0;
	let hbHeld = 0;
	let lcSent = 0;
	const refusals: Record<string, number> = {};
	const commands: Record<string, number> = {};
	const told = new Map<string, number>();
	let reconnects = 0;
	let stopping = false;
	let welcomedEver = 0;
	const t0 = performance.now();
	const cpu0 = process.cpuUsage();
	let joinMs: number | null = null;
	/** Messages sent before it (while the fleet joined) are not in the latencies. */
	let windowStart = Number.POSITIVE_INFINITY;

	const count = (m: Record<string, number>, k: string) => {
		m[k] = (m[k] ?? 0) + 1;
	};
	const send = (h: SimHive, s: string) => {
		if (h.open && h.ws) h.ws.send(s);
	};
	const event = (h: SimHive, kind: "worker.spawned" | "worker.exited", w: WorkerInfo) => {
		const seq = ++h.seq;
		if (w.state === "exited") h.unacked.set(seq, w);
		else h.announced.add(w.id);
		h.inFlight.set(seq, [performance.now(), true]);
		lcSent++;
		send(h, JSON.stringify({ type: "event", seq, event: kind, worker: w }));
	};
	const reply = (h: SimHive, id: string, status: number, body?: unknown, error?: string) =>
		send(h, JSON.stringify({ type: "reply", id, status, ...(body === undefined ? {} : { body }), ...(error ? { error } : {}) }));

	const onMessage = (h: SimHive, m: QueenMessage) => {
		if (m.type === "welcome") {
			if (!h.welcomed && ++welcomedEver === o.hives) joinMs = Math.round(performance.now() - t0);
			h.welcomed = true;
			h.paceMs = m.heartbeatMs ?? 0;
			told.set(h.id, h.paceMs);
			o.onTold?.(h.id, h.paceMs);
			if (m.credential) h.credential = m.credential;
		} else if (m.type === "pace" || m.type === "ack") {
			if (m.heartbeatMs !== undefined && m.heartbeatMs !== h.paceMs) {
				h.paceMs = m.heartbeatMs;
				h.nextAt = Math.min(h.nextAt, performance.now() + m.heartbeatMs);
				told.set(h.id, h.paceMs);
				o.onTold?.(h.id, h.paceMs);
			}
			if (m.type === "pace") return;
			const f = h.inFlight.get(m.seq);
			if (f) {
				h.inFlight.delete(m.seq);
				// Counted only when sent in the measured window (the join's own are not).
				if (f[0] >= windowStart) (f[1] ? lcLat : hbLat).push(performance.now() - f[0]);
			}
			// An ack covers every exit its message carried and those before it.
			let acked = false;
			for (const seq of h.unacked.keys())
				if (seq <= m.seq) {
					h.unacked.delete(seq);
					acked = true;
				}
			if (acked) h.dirty();
		} else if (m.type === "command") {
			count(commands, m.op);
			if (m.op === "spawn") {
				const b = m.body;
				const id = b.id ?? `${h.id}-q${h.seq}`;
				if (h.workers.has(id)) return reply(h, m.id, 409, undefined, `worker ${id} already exists`);
				const w = h.newWorker({
					id,
					command: b.command,
					gpus: b.gpus ?? [],
					labels: { ...(b.labels ?? {}), simulated: "true" },
					profile: b.profile ?? null,
				});
				event(h, "worker.spawned", w);
				reply(h, m.id, 201, w);
			} else if (m.op === "stop") {
				const ended = h.end(m.workerId, true);
				if (!ended) return reply(h, m.id, 404, undefined, `no worker ${m.workerId} on hive ${h.id}`);
				event(h, "worker.exited", ended);
				reply(h, m.id, 200, ended);
			} else if (m.op === "logs") reply(h, m.id, 200);
			else reply(h, m.id, 200, { uuid: m.uuid, cleared: [] });
		}
	};

	const dial = (h: SimHive) =>
		new Promise<void>((resolve) => {
			const base = o.queens[h.queenIndex]!;
			const token = h.credential ?? o.token;
			const ws = new WebSocket(`${base.replace(/^http/, "ws")}/v1/hives/connect`, {
				headers: token ? { authorization: `Bearer ${token}` } : {},
				handshakeTimeout: 10_000,
				generateMask: zeroMask,
				...(o.ca ? { ca: o.ca } : {}),
			});
			h.ws = ws;
			h.reconnected();
			ws.on("open", () => {
				h.open = true;
				ws.send(h.hello);
				const seq = ++h.seq;
				h.inFlight.set(seq, [performance.now(), false]);
				hbSent++;
				ws.send(h.heartbeat(seq));
				h.nextAt = performance.now() + tickMs * (0.8 + 0.4 * Math.random());
				resolve();
			});
			ws.on("message", (d) => {
				try {
					onMessage(h, JSON.parse(d.toString()) as QueenMessage);
				} catch {
					// Not JSON: ignored, as the hive does.
				}
			});
			ws.on("unexpected-response", (_q, res) => {
				count(refusals, `http ${res.statusCode}`);
				ws.terminate();
			});
			ws.on("error", (err: NodeJS.ErrnoException) => {
				// Never opened (refused, reset, timed out): said by its code; a drop after open is said by its close.
				if (!h.open) count(refusals, `error ${err.code ?? err.message}`);
			});
			ws.on("close", (code) => {
				const was = h.open;
				h.open = false;
				if (h.ws === ws) h.ws = null;
				resolve();
				if (stopping) return;
				if (was) count(refusals, `close ${code}`);
				// Dropped or refused: the next queen after a second or two, as a hive backs off.
				h.queenIndex = (h.queenIndex + 1) % o.queens.length;
				reconnects++;
				setTimeout(() => !stopping && void dial(h), 1000 + Math.random() * 1000).unref();
			});
		});

	// Join: a bounded number of handshakes at once.
	const concurrency = o.dialConcurrency ?? 200;
	let next = 0;
	await Promise.all(
		Array.from({ length: Math.min(concurrency, fleet.length) }, async () => {
			while (next < fleet.length) await dial(fleet[next++]!);
		}),
	);
	log(`${fleet.filter((h) => h.open).length}/${o.hives} hives connected in ${Math.round(performance.now() - t0)} ms`);

	// One timer for the fleet: heartbeats due, and churn.
	let churnOwed = 0;
	let last = performance.now();
	const timer = setInterval(() => {
		const now = performance.now();
		churnOwed += (o.churn * (now - last)) / 1000;
		last = now;
		for (const h of fleet) {
			if (!h.open || now < h.nextAt) continue;
			// As a hive does (queen-link.ts): not queued behind one that has not left (a queen behind on its intake
			// pauses reading); 10,000 hives' queued heartbeats took this process past a 4 GB heap.
			if (h.ws!.bufferedAmount > 0) {
				hbHeld++;
				continue;
			}
			h.nextAt = now + Math.max(tickMs, h.paceMs) * (0.8 + 0.4 * Math.random());
			const seq = ++h.seq;
			h.inFlight.set(seq, [now, false]);
			hbSent++;
			send(h, h.heartbeat(seq));
		}
		for (; churnOwed >= 1; churnOwed--) {
			const h = fleet[Math.floor(Math.random() * fleet.length)]!;
			if (!h.open || !h.welcomed || h.workers.size === 0) continue;
			const id = h.workers.keys().next().value!;
			const ended = h.end(id, false);
			if (ended) event(h, "worker.exited", ended);
			event(h, "worker.spawned", h.newWorker());
		}
	}, 20);
	const joinDeadline = performance.now() + o.seconds * 1000;
	while (welcomedEver < o.hives && performance.now() < joinDeadline) await new Promise((r) => setTimeout(r, 100));
	await o.windowAfter?.catch(() => {});
	windowStart = performance.now();
	const cpuJoin = process.cpuUsage(cpu0);
	hbLat.length = 0;
	lcLat.length = 0;
	hbSent = 0;
	hbHeld = 0;
	lcSent = 0;
	await new Promise((r) => setTimeout(r, o.seconds * 1000));
	clearInterval(timer);
	const measuredS = (performance.now() - windowStart) / 1000;
	const cpuWindow = process.cpuUsage(cpu0);
	const cpuS = (u: NodeJS.CpuUsage) => (u.user + u.system) / 1e6;
	// Nothing more is sent; what is in flight gets up to 5 s to be acked.
	const inFlight = () => fleet.reduce((n, h) => n + h.inFlight.size, 0);
	for (let i = 0; i < 50 && hbLat.length + lcLat.length < hbSent + lcSent && inFlight() > 0; i++) await new Promise((r) => setTimeout(r, 100));
	await o.beforeBye?.().catch(() => {});
	stopping = true;
	const connectedAtEnd = fleet.filter((h) => h.open).length;
	for (const h of fleet) {
		if (h.open && h.ws) {
			h.ws.send('{"type":"bye"}');
			h.ws.close();
		} else h.ws?.terminate();
	}
	const intervals: Record<string, number> = {};
	for (const ms of told.values()) count(intervals, String(ms));
	return {
		hives: o.hives,
		workersPerHive: o.workers,
		seconds: Math.round(measuredS * 10) / 10,
		welcomed: welcomedEver,
		connectedAtEnd,
		joinMs,
		heartbeats: latency(hbSent, hbLat),
		heartbeatsHeld: hbHeld,
		lifecycle: latency(lcSent, lcLat),
		intervals,
		refusals,
		commands,
		reconnects,
		cpu: {
			joinSeconds: Math.round(cpuS(cpuJoin) * 100) / 100,
			windowCores: Math.round(((cpuS(cpuWindow) - cpuS(cpuJoin)) / measuredS) * 100) / 100,
		},
	};
}
