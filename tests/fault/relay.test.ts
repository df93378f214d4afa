import { readFileSync } from "node:fs";
import { request } from "node:http";
import { join } from "node:path";
import { type CommandMessage, LOG_WINDOW } from "@apiary/protocol";
import { FakeHive, gpu, worker } from "@apiary/test-support/fake-hive";
import { type Daemon, json, removeDir, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// The queen relays worker logs from hives and sends them commands. Found by a
// probe: one GET for the logs of a worker whose hive had left stopped the
// queen (an 'error' emitted on a stream nobody listened to yet); a reader that
// never reads made the queen keep every chunk a hive sent (+1 GiB in 9 s).

const rssOf = (pid: number) => {
	const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
	return Number(m![1]) * 1024;
};

/** A GET whose body is not read until `read()` is called: bytes and how it ended. */
function lazyGet(url: string) {
	const res = new Promise<import("node:http").IncomingMessage>((resolve, reject) => request(url, resolve).on("error", reject).end());
	return {
		status: res.then((r) => r.statusCode),
		read: async (delayMs = 0) => {
			const r = await res;
			let bytes = 0;
			const chunks: Buffer[] = [];
			const ended = await new Promise<"end" | "cut">((resolve) => {
				r.on("data", (b: Buffer) => {
					bytes += b.length;
					if (chunks.length < 4096) chunks.push(b);
					if (delayMs > 0) {
						r.pause();
						setTimeout(() => r.resume(), delayMs);
					}
				});
				r.on("end", () => resolve("end"));
				r.on("error", () => resolve("cut"));
				r.on("aborted", () => resolve("cut"));
			});
			return { bytes, ended, body: Buffer.concat(chunks) };
		},
	};
}

const logsCommand = async (hive: FakeHive, n: number) =>
	(await until(() => hive.commands.filter((c) => c.op === "logs")[n], 10_000, "a logs command")) as CommandMessage;

describe("the logs relay and hives that are gone", () => {
	const dir = tempDir("fault-relay");
	let queen: Daemon;
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "1s", evictAfter: "8s" });
	});
	afterAll(async () => {
		await queen.stop();
		removeDir(dir);
	});

	const alive = async () => {
		expect(queen.proc.exitCode).toBeNull();
		expect((await json(`${queen.url}/healthz`)).status).toBe(200);
	};

	const join1 = async (id: string, workers = [worker("w")]) => {
		const h = new FakeHive(queen.url, id, { gpus: [gpu(0)] });
		await h.opened();
		h.hello();
		h.heartbeat(workers.map((w) => ({ ...w })));
		await until(async () => (await json(`${queen.url}/v1/hives/${id}`)).body?.state === "ready", 10_000, `${id} ready`);
		return h;
	};

	it("a reader that never reads costs a bounded buffer: the hive is credited no more, and one that sends past its credit is cancelled and the response cut", async () => {
		const h = await join1("flood", [worker("fw")]);
		const pid = queen.proc.pid!;
		const before = rssOf(pid);
		const reader = lazyGet(`${queen.url}/v1/workers/fw/logs?hive=flood&follow=true`);
		const cmd = await logsCommand(h, 0);
		// 2 MiB of base64 a message (1.5 MiB of log), 120 of them: 180 MiB, credit ignored.
		const chunk = Buffer.alloc(1.5 * 2 ** 20, "x").toString("base64");
		for (let i = 0; i < 120; i++) {
			h.send({ type: "log", id: cmd.id, data: chunk });
			if (i % 8 === 7) await sleep(10);
		}
		await until(() => h.messages.some((m) => m.type === "cancel" && m.id === cmd.id), 20_000, "the queen cancels the flood");
		// Nobody read: credit went only as far as the sockets' buffers took, far below what was sent.
		const credited = Math.max(LOG_WINDOW, ...h.messages.filter((m) => m.type === "credit" && m.id === cmd.id).map((m) => (m as { upTo: number }).upTo));
		expect(credited).toBeLessThan(40 * 2 ** 20);
		expect(await reader.status).toBe(200);
		const got = await reader.read();
		// What reached the reader is what was credited at most, not the 180 MiB sent.
		expect(got.bytes).toBeLessThanOrEqual(credited);
		expect(got.ended).toBe("cut");
		await sleep(500);
		// Nothing of the flood is kept (the issue saw +1,054 MiB here and no return).
		expect(rssOf(pid) - before).toBeLessThan(160 * 2 ** 20);
		await alive();
		h.close();
	});

	it("an honest hive sends within its credit and is credited more as its reader reads, however fast it sends: every byte arrives, in order", async () => {
		const h = await join1("honest", [worker("hw")]);
		const reader = lazyGet(`${queen.url}/v1/workers/hw/logs?hive=honest`);
		const cmd = await logsCommand(h, 0);
		// 48 MiB in 256 KiB chunks, each filled with its number mod 10, sent as fast as the
		// socket takes them (no pacing of its own): only the credit holds it back.
		const size = 256 * 1024;
		const total = 192;
		let sent = 0;
		const credit = () => Math.max(LOG_WINDOW, ...h.messages.filter((m) => m.type === "credit" && m.id === cmd.id).map((m) => (m as { upTo: number }).upTo));
		const pump = (async () => {
			while (sent < total) {
				if ((sent + 1) * size > credit()) {
					await sleep(2);
					continue;
				}
				h.send({ type: "log", id: cmd.id, data: Buffer.alloc(size, String(sent % 10)).toString("base64") });
				sent++;
				if (sent % 16 === 0) await sleep(0);
			}
			h.send({ type: "reply", id: cmd.id, status: 200 });
		})();
		expect(await reader.status).toBe(200);
		// Nobody reads yet: once the sockets' buffers are full the hive is credited no more and waits.
		await until(
			async () => {
				const before = sent;
				await sleep(300);
				return sent === before;
			},
			20_000,
			"the hive waits for credit",
		);
		expect(sent).toBeLessThan(total);
		expect((sent + 1) * size).toBeGreaterThan(credit());
		const got = await reader.read(2);
		await pump;
		expect(got.ended).toBe("end");
		expect(got.bytes).toBe(total * size);
		// In order: byte k belongs to chunk floor(k / size).
		for (let k = 0; k < got.body.length; k += size / 2) expect(got.body[k]).toBe(48 + (Math.floor(k / size) % 10));
		expect(credit()).toBeGreaterThanOrEqual(total * size);
		await alive();
		h.close();
	});

	it("a hive that refuses (404) before the first byte is a 404; one that fails or drops mid-relay cuts that response, never the queen", async () => {
		const h = await join1("flaky", [worker("a"), worker("b"), worker("c")]);
		const refused = lazyGet(`${queen.url}/v1/workers/a/logs?hive=flaky`);
		const c0 = await logsCommand(h, 0);
		h.send({ type: "reply", id: c0.id, status: 404, error: "no worker a on hive flaky" });
		expect(await refused.status).toBe(404);
		expect((await refused.read()).body.toString()).toMatch(/no worker a on hive flaky/);

		const failing = lazyGet(`${queen.url}/v1/workers/b/logs?hive=flaky&follow=true`);
		const c1 = await logsCommand(h, 1);
		h.send({ type: "log", id: c1.id, data: Buffer.from("partial\n").toString("base64") });
		expect(await failing.status).toBe(200);
		h.send({ type: "reply", id: c1.id, status: 500, error: "disk gone" });
		expect(await failing.read()).toMatchObject({ ended: "cut", bytes: 8 });

		const dropped = lazyGet(`${queen.url}/v1/workers/c/logs?hive=flaky&follow=true`);
		const c2 = await logsCommand(h, 2);
		h.send({ type: "log", id: c2.id, data: Buffer.from("before the drop\n").toString("base64") });
		expect(await dropped.status).toBe(200);
		h.close();
		expect(await dropped.read()).toMatchObject({ ended: "cut", bytes: 16 });
		await alive();
	});

	it("every route asked about hives that left, were lost, went stale, dropped or never existed, and their workers, answers, and the queen stays up", async () => {
		// Lost takes --evict-after (8 s): that hive goes first and is asked last.
		const lost = await join1("gone-lost", [worker("wx")]);
		lost.close();
		const left = await join1("gone-left", [worker("wl")]);
		left.send({ type: "bye" });
		const stale = await join1("gone-stale", [worker("ws")]); // connected, silent: never answers a command
		const dropped = await join1("gone-dropped", [worker("wd")]);
		dropped.close();
		await until(async () => (await json(`${queen.url}/v1/hives/gone-left`)).body?.state === "left", 10_000, "left");
		await until(async () => (await json(`${queen.url}/v1/hives/gone-stale`)).body?.state === "stale", 10_000, "stale");
		const cases: [string, string, string][] = [
			["gone-left", "wl", "left"],
			["gone-stale", "ws", "stale"],
			["gone-dropped", "wd", "stale"],
			["never-was", "nobody", "none"],
			["gone-lost", "wx", "lost"],
		];
		const statuses: string[] = [];
		for (const [hive, w, state] of cases) {
			if (state !== "none") await until(async () => (await json(`${queen.url}/v1/hives/${hive}`)).body?.state === state, 15_000, `${hive} ${state}`);
			const post = (body: object) => ({ method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
			const asks: [string, RequestInit?][] = [
				[`/v1/hives/${hive}`],
				[`/v1/workers?hive=${hive}`],
				[`/v1/workers/${w}`],
				[`/v1/workers/${w}?hive=${hive}`],
				[`/v1/gpus?hive=${hive}`],
				[`/v1/gpus?free=true&hive=${hive}`],
				[`/v1/workers/${w}/logs`],
				[`/v1/workers/${w}/logs?hive=${hive}`],
				[`/v1/workers/${w}/logs?hive=${hive}&follow=true&tail=5`],
				[`/v1/workers/${w}?hive=${hive}`, { method: "DELETE" }],
				[`/v1/workers/${w}`, { method: "DELETE" }],
				["/v1/workers", post({ command: ["true"], hive })],
				["/v1/workers", post({ command: ["true"], hive, gpus: { count: 1 } })],
				["/v1/workers", post({ command: ["true"], hive, waitMs: 200 })],
				["/v1/claims", post({ count: 1, ttlSeconds: 60, holder: "t" })],
				["/v1/claims/c-000000000000", { method: "DELETE" }],
				[`/v1/recommendations?label=hive=${hive}`],
				[`/v1/events?hive=${hive}&worker=${w}`],
			];
			for (const [path, init] of asks) {
				let status: number | string;
				try {
					// A stale hive never answers: the client gives up; the queen must not care.
					const res = await fetch(`${queen.url}${path}`, { ...init, signal: AbortSignal.timeout(500) });
					status = res.status;
					await res.body?.cancel();
				} catch {
					status = "no answer in 0.5 s";
				}
				statuses.push(`${init?.method ?? "GET"} ${path} → ${status}`);
				await alive();
			}
		}
		// The crash found: a left hive's worker's logs. A refusal now, naming why.
		expect(statuses).toContain("GET /v1/workers/wl/logs?hive=gone-left → 503");
		expect(statuses).toContain("GET /v1/workers/wx/logs?hive=gone-lost → 503");
		expect(statuses).toContain("GET /v1/workers/nobody/logs?hive=never-was → 404");
		expect(statuses.filter((s) => / → 5\d\d$/.test(s) && !/ → 50[34]$/.test(s))).toEqual([]);
		expect(queen.err()).not.toMatch(/Unhandled|uncaught/i);
		stale.close();
	});
});
