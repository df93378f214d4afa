import { type CommandMessage, LOG_WINDOW, LogsQuery, type ReplyMessage, SpawnBody } from "@apiary/protocol";
import { HttpError, messageOf } from "@apiary/kit/errors";
import { setTimeout as sleep } from "node:timers/promises";
import { Ajv } from "ajv";
import { shown } from "./shown.ts";
import type { Hive } from "./hive.ts";
import { logStream } from "./log-stream.ts";

// The queen's commands on the socket (placement): spawn, stop and logs,
// validated against the same declarations and ajv options as the hive's own
// API, so a spawn through the queen is refused exactly as one made here.

const ajv = new Ajv({ allErrors: false, coerceTypes: false, removeAdditional: false, useDefaults: false });
const validSpawn = ajv.compile(SpawnBody);
const validLogs = ajv.compile(LogsQuery);

const MAX_CHUNK = 256 * 1024;

export interface CommandContext {
	hive: Hive;
	/** false: started with --no-remote-spawn. */
	remoteSpawn: boolean;
	reply: (m: ReplyMessage) => void;
	/** One chunk of a `logs` command's output (base64 on the wire). */
	chunk: (id: string, data: Buffer) => void;
	/** Bytes queued on the socket, not yet sent: a log stops being read while it is over SEND_BACKLOG. */
	backlog?: () => number;
}

/** A running `logs` command, as the queen steers it: `cancel`, and `credit` as its reader takes what was sent. */
export interface CommandControl {
	cancel(): void;
	/** The total of bytes this command may have sent (LOG_WINDOW until the first credit). */
	credit(upTo: number): void;
}

/** Queued socket bytes past which a log relay waits (the queen's own reader may be slow too). */
const SEND_BACKLOG = 1 << 20;

/** Runs one command; its reply is sent when it is done. Returns its control (logs only). */
export function runCommand(m: CommandMessage, ctx: CommandContext): CommandControl | null {
	const fail = (status: number, error: string) => ctx.reply({ type: "reply", id: m.id, status, error });
	const failed = (err: unknown) => fail(err instanceof HttpError ? err.statusCode : 500, messageOf(err));
	switch (m.op) {
		case "spawn": {
			if (!ctx.remoteSpawn) {
				fail(403, `hive ${ctx.hive.hiveId} was started with --no-remote-spawn: it runs only workers spawned on its own API`);
				return null;
			}
			if (!validSpawn(m.body)) {
				const e = validSpawn.errors![0]!;
				fail(400, `body${e.instancePath.replaceAll("/", ".")} ${e.message}`);
				return null;
			}
			ctx.hive.spawn(m.body).then(
				(w) => ctx.reply({ type: "reply", id: m.id, status: 201, body: shown(w) }),
				(err) => failed(err),
			);
			return null;
		}
		case "stop": {
			if (!ctx.hive.get(m.workerId)) {
				fail(404, `no worker ${m.workerId} on hive ${ctx.hive.hiveId}`);
				return null;
			}
			ctx.hive.kill(m.workerId, m.reason ?? "killed", m.by).then(
				(w) => ctx.reply({ type: "reply", id: m.id, status: 200, body: shown(w) }),
				(err) => failed(err),
			);
			return null;
		}
		case "gpu-clear": {
			const known = ctx.hive.gpuStatus().gpus.some((g) => g.uuid === m.uuid);
			if (!known) fail(404, `no GPU ${m.uuid} on hive ${ctx.hive.hiveId}`);
			else ctx.reply({ type: "reply", id: m.id, status: 200, body: { uuid: m.uuid, cleared: ctx.hive.clearGpuHealth(m.uuid) } });
			return null;
		}
		case "logs": {
			if (!validLogs(m.query)) {
				const e = validLogs.errors![0]!;
				fail(400, `querystring${e.instancePath.replaceAll("/", ".")} ${e.message}`);
				return null;
			}
			if (!ctx.hive.get(m.workerId)) {
				fail(404, `no worker ${m.workerId} on hive ${ctx.hive.hiveId}`);
				return null;
			}
			const ac = new AbortController();
			const follow = m.query.follow === "true" || m.query.follow === "1";
			// The queen's credit: nothing more is read from the file than it may send (its reader is behind).
			let allowed = LOG_WINDOW;
			let sent = 0;
			let wake: (() => void) | null = null;
			const nudge = () => {
				wake?.();
				wake = null;
			};
			(async () => {
				for await (const b of logStream(ctx.hive, m.workerId, m.query, follow, ac.signal)) {
					for (let i = 0; i < b.length; i += MAX_CHUNK) {
						const part = b.subarray(i, i + MAX_CHUNK);
						while (sent + part.length > allowed || (ctx.backlog?.() ?? 0) > SEND_BACKLOG) {
							if (ac.signal.aborted) return;
							const credited = sent + part.length > allowed;
							await (credited ? new Promise<void>((r) => (wake = r)) : sleep(20));
						}
						if (ac.signal.aborted) return;
						sent += part.length;
						ctx.chunk(m.id, part);
					}
				}
			})().then(
				() => ctx.reply({ type: "reply", id: m.id, status: 200 }),
				(err) => failed(err),
			);
			return {
				cancel: () => {
					ac.abort();
					nudge();
				},
				credit: (upTo) => {
					allowed = Math.max(allowed, upTo);
					nudge();
				},
			};
		}
	}
}
