import { readFileSync, renameSync, writeFileSync } from "node:fs";
import {
	type GpuInfo,
	type HelloMessage,
	type HiveMessage,
	type HostFacts,
	packStats,
	type QueenMessage,
	type Snapshot,
	type WorkerInfo,
	type WorkerTick,
} from "@apiary/protocol";
import { backoffDelay } from "@apiary/kit/backoff";
import WebSocket from "ws";
import { type CommandControl, runCommand } from "./commands.ts";
import type { GpuSource, Hive } from "./hive.ts";

export interface QueenLinkOptions {
	/** http(s):// or ws(s):// address of the queen, or several (`--queen URL1,URL2`): the next is tried when one is unreachable. */
	queen: string | string[];
	token: string | null;
	/**
	 * Where this hive keeps the credential of its own an enrolment gave it
	 * (mode 0600, in its state dir): used in preference to `token` once there.
	 */
	credentialFile?: string;
	/** https/wss queens: the CA their certificates are checked against (default: the system's). */
	ca?: Buffer;
	/** The certificate and key shown to a wss queen that asks for one (read at each connection: a renewal is used). */
	clientCert?: () => { cert: Buffer; key: Buffer } | undefined;
	hive: Hive;
	host: HostFacts;
	gpus: GpuSource | null;
	version: string;
	/** `hive start --label k=v`: sent in hello, where placement constraints look. */
	labels?: Record<string, string>;
	/** false (`--no-remote-spawn`): the queen's spawn commands are refused. */
	remoteSpawn?: boolean;
	cordonOnUnhealthyGpu?: boolean;
	/** Reconnect backoff: base and cap, ms (full jitter in between). */
	backoffBaseMs?: number;
	backoffCapMs?: number;
	log?: (msg: string, extra?: object) => void;
}

/**
 * The workers of one heartbeat: in full the first time on a connection (and
 * exits), then as a WorkerTick with packed stats. Marks the ones it describes.
 */
export function heartbeatWorkers(all: WorkerInfo[], announced: Set<string>): (WorkerInfo | WorkerTick)[] {
	return all.map((w) => {
		const k = `${w.id}@${w.startedAt}`;
		if (w.state === "running" && announced.has(k))
			return { id: w.id, state: "running", startedAt: w.startedAt, pid: w.pid, s: w.stats ? packStats(w.stats) : null };
		if (w.state === "running") announced.add(k);
		return wire(w);
	});
}

/** A GPU's health signals are sent again at least this often, changed or not (a lost heartbeat's change comes this late at worst). */
export const SIGNALS_EVERY_MS = 30_000;

/**
 * The GPUs of one heartbeat: each GPU's health signals (21 values, ~600 B
 * a GPU) only when they changed since last sent on this connection, or
 * SIGNALS_EVERY_MS have passed; the queen keeps the last it got. Marks what
 * it sends.
 */
export function heartbeatGpus(gpus: GpuInfo[], sent: Map<string, { json: string; at: number }>, now: number): GpuInfo[] {
	return gpus.map((g) => {
		if (!g.signals) return g;
		const json = JSON.stringify(g.signals);
		const last = sent.get(g.uuid);
		if (last && last.json === json && now - last.at < SIGNALS_EVERY_MS) {
			const { signals: _s, ...rest } = g;
			return rest;
		}
		sent.set(g.uuid, { json, at: now });
		return g;
	});
}

/** A worker as the queen is told of it: its environment stays on the host (it may hold secrets). */
function wire(w: WorkerInfo): WorkerInfo {
	return { ...w, env: {} };
}

export function socketUrl(queen: string): string {
	const u = new URL(queen);
	if (u.protocol === "http:") u.protocol = "ws:";
	else if (u.protocol === "https:") u.protocol = "wss:";
	u.pathname = "/v1/hives/connect";
	return u.toString();
}

/**
 * The hive's side of the socket: hello on connect, a heartbeat per tick, an
 * event at once on spawn and exit; reconnects with exponential backoff and
 * full jitter (cap 30 s). Exit records stay "unreported" until the queen acks
 * a message carrying them, so none is lost while the queen is away, and the
 * queen de-duplicates what is sent twice.
 */
export class QueenLink {
	private readonly o: QueenLinkOptions;
	private ws: WebSocket | null = null;
	private open = false;
	private seq = 0;
	private attempt = 0;
	/** Refusals and back-off requests since the last ack: a backoff the queen's welcome does not reset. */
	private refusals = 0;
	private timer: NodeJS.Timeout | null = null;
	private stopped = false;
	/** seq → ids of exited workers that message carried */
	private readonly pending = new Map<number, string[]>();
	/** Workers described in full on this connection (id@startedAt); later ticks send only their stats. */
	private readonly announced = new Set<string>();
	/** GPU signals sent on this connection (hello sends them all). */
	private readonly signalsSent = new Map<string, { json: string; at: number }>();
	/** Commands still running (log readers), by id: what a cancel or a lost connection stops. */
	private readonly running = new Map<string, CommandControl>();
	private readonly onTick = (s: Snapshot) => this.heartbeat(s);
	private readonly onSpawned = (w: WorkerInfo) => this.event("worker.spawned", w);
	private readonly onExited = (w: WorkerInfo) => this.event("worker.exited", w);
	connects = 0;
	private readonly queens: string[];
	/** The queen dialled next, and how many in a row failed in this round. */
	private current = 0;
	private failedInRound = 0;
	/** When the queen last sent anything on this connection (monotonic ms), and its stale-after (welcome). */
	private lastHeard = 0;
	private queenStaleAfterMs = 3000;
	/** This connection was dropped for the queen's silence: the next queen is dialled, as for one unreachable. */
	private droppedSilent = false;
	/**
	 * The heartbeat interval the queen asked for (welcome, acks; 0: every tick) and when the next may go
	 * (monotonic): ticks between send nothing; the next heartbeat carries the latest sample of each worker.
	 */
	private paceMs = 0;
	private nextBeatAt = 0;

	constructor(o: QueenLinkOptions) {
		this.o = o;
		this.queens = (Array.isArray(o.queen) ? o.queen : o.queen.split(",")).map((q) => q.trim()).filter(Boolean);
	}

	/** The queen this hive is connected to, or dials next. */
	get queen(): string {
		return this.queens[this.current]!;
	}

	get connected(): boolean {
		return this.open;
	}

	start(): void {
		this.stopped = false;
		this.o.hive.on("tick", this.onTick);
		this.o.hive.on("spawned", this.onSpawned);
		this.o.hive.on("exited", this.onExited);
		this.connect();
	}

	/** Say bye (the queen reports hive.left rather than waiting to call it lost) and stop. */
	async stop(): Promise<void> {
		this.stopped = true;
		if (this.timer) clearTimeout(this.timer);
		this.o.hive.off("tick", this.onTick);
		this.o.hive.off("spawned", this.onSpawned);
		this.o.hive.off("exited", this.onExited);
		const ws = this.ws;
		if (!ws) return;
		if (this.open) this.send({ type: "bye" });
		await new Promise<void>((resolve) => {
			ws.once("close", () => resolve());
			setTimeout(() => {
				ws.terminate();
				resolve();
			}, 1000).unref();
			if (!this.open) ws.terminate();
		});
	}

	private connect(): void {
		const headers: Record<string, string> = {};
		const token = this.ownCredential() ?? this.o.token;
		if (token) headers.authorization = `Bearer ${token}`;
		const ws = new WebSocket(socketUrl(this.queen), { headers, handshakeTimeout: 10_000, ...(this.o.ca ? { ca: this.o.ca } : {}), ...this.o.clientCert?.() });
		this.ws = ws;
		let welcomed = false;
		ws.on("open", () => {
			this.open = true;
			this.lastHeard = performance.now();
			this.droppedSilent = false;
			this.paceMs = 0;
			this.nextBeatAt = 0;
			this.failedInRound = 0;
			this.connects++;
			this.pending.clear();
			this.announced.clear();
			this.signalsSent.clear();
			this.o.log?.("connected to the queen", { queen: this.queen });
			const gpu = this.o.gpus?.status();
			const hello: HelloMessage = {
				type: "hello",
				hiveId: this.o.hive.hiveId,
				instanceId: this.o.hive.instanceId,
				version: this.o.version,
				host: this.o.host,
				driver: this.o.hive.driver.info,
				gpus: heartbeatGpus(gpu?.gpus ?? [], this.signalsSent, Date.now()),
				labels: this.o.labels ?? {},
				remoteSpawn: this.o.remoteSpawn !== false,
				...(this.o.cordonOnUnhealthyGpu ? { cordonOnUnhealthyGpu: true } : {}),
			};
			this.send(hello);
			const snap = this.o.hive.snapshot();
			if (snap) this.heartbeat(snap);
		});
		ws.on("message", (data) => {
			this.lastHeard = performance.now();
			let m: QueenMessage;
			try {
				m = JSON.parse(data.toString());
			} catch {
				// The queen speaks JSON; a frame that is not is ignored (acks resend nothing by themselves).
				return;
			}
			if (m.type === "ack") {
				// Stored: whatever refused this hive before has passed.
				this.refusals = 0;
				if (m.heartbeatMs !== undefined) this.pace(m.heartbeatMs);
				const ids = this.pending.get(m.seq);
				this.pending.delete(m.seq);
				if (ids && ids.length > 0) this.o.hive.markReported(ids);
			} else if (m.type === "command") {
				const ctl = runCommand(m, {
					hive: this.o.hive,
					remoteSpawn: this.o.remoteSpawn !== false,
					// A reply to a connection that is gone is dropped: the queen failed the command when it lost us.
					reply: (r) => {
						this.running.delete(r.id);
						if (this.ws === ws) this.send(r);
					},
					chunk: (id, data) => {
						if (this.ws === ws) this.send({ type: "log", id, data: data.toString("base64") });
					},
					backlog: () => ws.bufferedAmount,
				});
				if (ctl) this.running.set(m.id, ctl);
			} else if (m.type === "pace") {
				this.pace(m.heartbeatMs);
			} else if (m.type === "cancel") {
				this.running.get(m.id)?.cancel();
				this.running.delete(m.id);
			} else if (m.type === "credit") {
				this.running.get(m.id)?.credit(m.upTo);
			} else if (m.type === "welcome") {
				// Accepted: a later drop starts its backoff afresh. (Not on open: a refusal follows an open.)
				this.attempt = 0;
				welcomed = true;
				this.queenStaleAfterMs = m.staleAfterMs;
				this.pace(m.heartbeatMs ?? 0);
				if (m.credential) this.keepCredential(m.credential);
			}
		});
		ws.on("close", (code, reason) => {
			// Log readers for the queen stop with the connection that asked for them.
			for (const ctl of this.running.values()) ctl.cancel();
			this.running.clear();
			const was = this.open;
			this.open = false;
			this.ws = null;
			if (this.droppedSilent) {
				// The queen stopped answering (a partition, a queen cut off from its database): the next one.
				this.droppedSilent = false;
				this.current = (this.current + 1) % this.queens.length;
				this.failedInRound = 0;
				this.schedule(50);
				return;
			}
			// 4409: another live hive holds this hive's id on that queen; 4403: its credential is not for this id.
			if (code === 4409 || code === 4403) this.o.log?.("the queen refused this hive", { code, reason: reason.toString() });
			else if (was) this.o.log?.("disconnected from the queen", { queen: this.queen, code, reason: reason.toString() });
			if (was && welcomed && code !== 1013) {
				// Dropped: the same queen first (a blip), then the others.
				this.failedInRound = 0;
				this.schedule();
				return;
			}
			if (was) {
				// Refused after the handshake (id taken, bad credential, bad hello) or told to back off (1013: the
				// queen cannot store what it is sent): nothing a quick retry mends, so a backoff that grows until
				// an ack, at least half of each step (equal jitter), never the full jitter's near-zero waits.
				if (code === 1013) this.o.log?.("the queen cannot store this hive's reports; backing off", { queen: this.queen, reason: reason.toString() });
				this.failedInRound = 0;
				this.schedule(backoffDelay(this.refusals++, this.o.backoffBaseMs ?? 500, this.o.backoffCapMs ?? 30_000, () => 0.5 + Math.random() / 2));
				return;
			}
			// Unreachable: the next queen at once, until every one failed this round; then back off.
			this.current = (this.current + 1) % this.queens.length;
			if (++this.failedInRound < this.queens.length) this.schedule(50);
			else {
				this.failedInRound = 0;
				this.schedule();
			}
		});
		ws.on("unexpected-response", (_req, res) => {
			this.o.log?.("the queen refused the connection", { status: res.statusCode });
		});
		ws.on("error", (err) => {
			// close follows; a TLS failure (wrong CA, expired certificate) is said once per round, naming it.
			if (/certificate|self.signed|SSL|TLS/i.test(err.message)) this.o.log?.("cannot verify the queen's certificate", { queen: this.queen, err: err.message });
		});
	}

	/** The credential an enrolment gave this hive, if it has one. */
	private ownCredential(): string | null {
		const f = this.o.credentialFile;
		if (!f) return null;
		try {
			return readFileSync(f, "utf8").trim() || null;
		} catch {
			// None yet (not enrolled): the configured token is used.
			return null;
		}
	}

	/** Enrolled: the queen gave this hive a secret bound to its id. Kept 0600, written whole or not at all. */
	private keepCredential(secret: string): void {
		const f = this.o.credentialFile;
		if (!f) {
			this.o.log?.("the queen enrolled this hive, but it has no state dir to keep the credential in; it will enrol again", {});
			return;
		}
		try {
			writeFileSync(`${f}.tmp`, `${secret}\n`, { mode: 0o600 });
			renameSync(`${f}.tmp`, f);
			this.o.log?.("enrolled: this hive's own credential is kept in its state dir", { file: f });
		} catch (err) {
			this.o.log?.("cannot keep the enrolment credential", { file: f, err: String(err) });
		}
	}

	/** The next dial: after `delayMs`, or after the backoff (exponential, full jitter, cap 30 s). */
	private schedule(delayMs?: number): void {
		if (this.stopped || this.timer) return;
		const delay = delayMs ?? backoffDelay(this.attempt++, this.o.backoffBaseMs ?? 500, this.o.backoffCapMs ?? 30_000);
		this.timer = setTimeout(() => {
			this.timer = null;
			if (!this.stopped) this.connect();
		}, delay);
		this.timer.unref();
	}

	private send(m: HiveMessage): boolean {
		if (!this.open || !this.ws) return false;
		this.ws.send(JSON.stringify(m));
		return true;
	}

	private heartbeat(s: Snapshot): void {
		if (!this.open) return;
		// An open socket is no proof the queen hears: a partition or a queen stuck on its database lets no
		// ack through and no close either. Silent for twice its stale-after (at least 5 s) with messages
		// unacknowledged, it is dropped and the next queen dialled; exit records stay unreported meanwhile.
		const now = performance.now();
		const silentMs = now - this.lastHeard;
		if (this.pending.size > 0 && silentMs > Math.max(2 * this.queenStaleAfterMs, 3 * this.paceMs, 5000)) {
			this.o.log?.("the queen stopped answering; trying the next", { queen: this.queen, silentMs: Math.round(silentMs), unacked: this.pending.size });
			this.droppedSilent = true;
			this.ws?.terminate();
			return;
		}
		// Slowed down by the queen: this tick is sampled (the hive's API, /metrics and usage) but not sent.
		if (now < this.nextBeatAt) return;
		// The last message has not left yet (a queen behind on its intake reads this socket no further for a while):
		// this heartbeat is not queued behind it, in this process's memory without bound; the first tick after it
		// has gone sends the latest sample instead.
		if ((this.ws?.bufferedAmount ?? 0) > 0) return;
		// Spread (±20 %) so that hives told the same interval do not send together.
		this.nextBeatAt = now + this.paceMs * (0.8 + 0.4 * Math.random());
		const gpu = { ...s.gpu, gpus: heartbeatGpus(s.gpu.gpus, this.signalsSent, Date.now()) };
		const all = this.o.hive.unreported();
		const seq = ++this.seq;
		this.pending.set(
			seq,
			all.filter((w) => w.state === "exited").map((w) => w.id),
		);
		this.send({ type: "heartbeat", seq, snapshot: { ...s, gpu, workers: heartbeatWorkers(all, this.announced) } });
	}

	/** The interval the queen asks for; a shorter one than the wait left takes effect at once. */
	private pace(ms: number): void {
		if (ms !== this.paceMs) this.o.log?.("the queen set the heartbeat interval", { queen: this.queen, heartbeatMs: ms });
		this.paceMs = ms;
		this.nextBeatAt = Math.min(this.nextBeatAt, performance.now() + ms);
	}

	private event(event: "worker.spawned" | "worker.exited", w: WorkerInfo): void {
		if (!this.open) return;
		const seq = ++this.seq;
		if (w.state === "exited") this.pending.set(seq, [w.id]);
		else this.announced.add(`${w.id}@${w.startedAt}`);
		this.send({ type: "event", seq, event, worker: wire(w) });
	}
}
