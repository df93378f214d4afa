import { execFileSync } from "node:child_process";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import type { PlacementAnswer, QueenWorkerView } from "@apiary/protocol";
import { makeNet, type TestNet } from "@apiary/test-support/netns";
import {
	type Daemon,
	FAKE_SMI,
	json,
	loggedEvents,
	newCgroupRoot,
	removeCgroupRoot,
	removeDir,
	startHive,
	startQueen,
	tempDir,
} from "@apiary/test-support/procs";
import { type SlowProxy, startSlowProxy } from "@apiary/test-support/slow-proxy";
import { until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// A slow, lossy link between a hive and its queen (issue #21): 200 ms each
// way, and 5 % of chunks held back another 600 ms as a lost segment's
// retransmission would be (a proxy on the test's own bridge, seeded: the
// seed is printed). Heartbeats, a placement and a followed log must all work
// within the production timeouts (stale after 3 s, evicted after 90 s).

const TOKEN = "chaos-slow-token";
const SEED = Number(process.env.CHAOS_SEED ?? Date.now() % 100_000);

describe("a hive behind 200 ms of latency and 5 % loss", () => {
	let net: TestNet;
	let queen: Daemon;
	let hive: Daemon;
	let proxy: SlowProxy;
	const root = newCgroupRoot();
	const dir = tempDir("chaos-slow");
	const tokenFile = join(dir, "token");
	const auth = { authorization: `Bearer ${TOKEN}` };
	const q = <T>(path: string, init: RequestInit = {}) => json<T>(`${queen.url}${path}`, { ...init, headers: { ...auth, ...(init.headers ?? {}) } });

	beforeAll(async () => {
		console.log(`chaos seed ${SEED} (CHAOS_SEED=${SEED} replays it)`);
		writeFileSync(tokenFile, `${TOKEN}\n`, { mode: 0o600 });
		net = makeNet(["queen", "hive"]);
		queen = await startQueen({
			db: join(dir, "q.db"),
			sqlite: true,
			host: net.addr("queen"),
			wrap: net.wrap("queen"),
			tokenFile,
			staleAfter: "3s",
			evictAfter: "90s",
			extra: ["--insecure-plaintext"],
		});
		proxy = await startSlowProxy({
			listenHost: net.hostAddr,
			target: { host: net.addr("queen"), port: queen.port },
			latencyMs: 200,
			loss: 0.05,
			retransmitMs: 600,
			seed: SEED,
		});
		hive = await startHive({
			queen: `http://${net.hostAddr}:${proxy.port}`,
			name: "chaos-slow",
			stateDir: join(dir, "h"),
			cgroupRoot: root,
			interval: "1s",
			nvidiaSmi: FAKE_SMI("a100x8-idle"),
			tokenFile,
			wrap: net.wrap("hive"),
		});
		await until(async () => (await q<unknown[]>("/v1/gpus?free=true")).body.length === 8, 30_000, "the hive's GPUs at the queen");
	}, 120_000);
	afterAll(async () => {
		await hive?.stop();
		await proxy?.close();
		await queen?.stop();
		await removeCgroupRoot(root);
		const names = net ? [net.ns("queen"), net.ns("hive")] : [];
		net?.destroy();
		removeDir(dir);
		const left = execFileSync("ip", ["netns", "list"], { encoding: "utf8" });
		for (const n of names) expect(left).not.toContain(n);
	});

	it("heartbeats keep it ready, a placement starts within its timeout, a followed log comes whole and in order, the exit record once", async () => {
		// A placement over the slow link (the queen's spawn command and the hive's reply each cross it).
		const placed = await q<PlacementAnswer>("/v1/workers", {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({
				id: "chatty",
				command: ["sh", "-c", "i=0; while [ $i -lt 300 ]; do i=$((i+1)); echo line $i; [ $((i % 50)) -eq 0 ] && sleep 1; done"],
				gpus: { count: 1 },
			}),
		});
		expect(placed.status, JSON.stringify(placed.body)).toBe(201);
		const res = await fetch(`${queen.url}/v1/workers/chatty/logs?follow=true`, { headers: auth });
		expect(res.status).toBe(200);
		const text = await res.text();
		expect(text).toBe(Array.from({ length: 300 }, (_, i) => `line ${i + 1}\n`).join(""));
		await until(async () => (await q<QueenWorkerView>("/v1/workers/chatty")).body.state === "exited", 20_000, "its exit record");
		expect((await q<QueenWorkerView>("/v1/workers/chatty")).body.exit?.exitCode).toBe(0);
		// Ready throughout: never stale, let alone lost; one exit event.
		await new Promise((r) => setTimeout(r, 5000));
		const log = await loggedEvents(queen.url, "hive.*,worker.exited", 800, auth);
		expect(log.filter((e) => e.type === "hive.stale" || e.type === "hive.lost")).toEqual([]);
		expect(log.filter((e) => e.type === "worker.exited")).toHaveLength(1);
		expect((await q<{ state: string }[]>("/v1/hives")).body[0]?.state).toBe("ready");
		// The faults were there.
		expect(proxy.stats.lost).toBeGreaterThan(0);
	}, 90_000);
});
