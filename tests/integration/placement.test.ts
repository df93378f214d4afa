import { spawn } from "node:child_process";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { Claim, GpuView, PendingPlacements, PlacementAnswer, QueenWorkerView } from "@apiary/protocol";
import { type Daemon, FAKE_SMI, json, newCgroupRoot, removeCgroupRoot, removeDir, runCli, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Placement end to end: a queen and hives with different (fake) GPU sets, all
// real processes on loopback; workers run through the queen over the hives'
// sockets, as a CI scheduler runs them.
const QUEEN_BIN = new URL("../../packages/queen/bin/queen.js", import.meta.url).pathname;

describe("placement through the queen", () => {
	const dir = tempDir("place");
	const roots: string[] = [];
	let queen: Daemon;
	const hives = new Map<string, Daemon>();
	const hive = async (name: string, smi: string, extra: string[] = []) => {
		const root = newCgroupRoot();
		roots.push(root);
		const h = await startHive({ queen: queen.url, name, stateDir: join(dir, name), cgroupRoot: root, nvidiaSmi: FAKE_SMI(smi), extra });
		hives.set(name, h);
		return h;
	};
	const post = (body: object) =>
		json<PlacementAnswer & { message: string }>(`${queen.url}/v1/workers`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify(body),
		});
	const gpus = async () => (await json<GpuView[]>(`${queen.url}/v1/gpus`)).body;
	const claims = async () => (await json<Claim[]>(`${queen.url}/v1/claims`)).body;

	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "queen.db"), evictAfter: "90s" });
		// A100 ×8 (2 busy: 6 free), H100 in MIG mode (busy), L40S ×4 (1 busy: 3 free), and 8 idle A100s.
		await Promise.all([
			hive("a100", "a100x8", ["--label", "pool=a100"]),
			hive("h100", "h100-mig", ["--label", "pool=h100"]),
			hive("l40s", "l40sx4", ["--label", "pool=l40s"]),
			hive("idle", "a100x8-idle", ["--label", "pool=idle"]),
			hive("local", "no-driver", ["--no-remote-spawn", "--label", "pool=local"]),
		]);
		// The H100 is listed with its two MIG instances.
		// Five hives, each with its spawn helper and fake nvidia-smi (Node processes too), starting at once on two cores.
		await until(async () => (await gpus()).length === 8 + 3 + 4 + 8, 45_000, "every hive's GPUs");
	}, 90_000);
	afterAll(async () => {
		for (const h of hives.values()) await h.stop();
		await queen?.stop();
		for (const r of roots) await removeCgroupRoot(r);
		removeDir(dir);
	});

	it("queen run --gpus 2 --min-memory 40G prints two UUIDs of one hive that match /v1/gpus, exits with the worker's code, and its claim is gone", async () => {
		const r = await runCli("queen", [
			"run",
			"--queen",
			queen.url,
			"--gpus",
			"2",
			"--min-memory",
			"40G",
			"--",
			"sh",
			"-c",
			"echo $CUDA_VISIBLE_DEVICES; exit 7",
		]);
		expect(r.code).toBe(7);
		const uuids = r.stdout.trim().split(",");
		expect(uuids).toHaveLength(2);
		const all = await gpus();
		const placed = uuids.map((u) => all.find((g) => g.uuid === u)!);
		expect(placed.every((g) => g !== undefined)).toBe(true);
		expect(new Set(placed.map((g) => g.hiveId)).size).toBe(1);
		// Best fit: the L40S hive (3 free) before the A100 hive (6 free); each with ≥ 40 GiB free.
		expect(placed[0]!.hiveId).toBe("l40s");
		expect(placed.every((g) => (g.memoryFreeMiB ?? 0) >= 40_960)).toBe(true);
		expect(r.stderr).toMatch(/queen run: w-[0-9a-f]{8} on hive l40s with GPUs /);
		await until(async () => (await claims()).length === 0, 5000, "the placement's claim released");
	});

	it("the worker sees its GPUs by UUID, /v1/gpus shows them held by it, and a 1-GPU placement goes to the hive with 1 free rather than 6 (best fit)", async () => {
		const a = await post({
			id: "hold-two",
			command: ["sh", "-c", "echo $NVIDIA_VISIBLE_DEVICES; sleep 30"],
			gpus: { count: 2 },
			constraints: { pool: "l40s" },
		});
		expect(a.status).toBe(201);
		expect(a.body).toMatchObject({ hiveId: "l40s", id: "hold-two" });
		expect(a.body.claimId).toMatch(/^c-/);
		await until(async () => (await gpus()).filter((g) => g.heldBy.includes("hold-two")).length === 2, 10_000, "GPUs held by hold-two");
		const held = (await gpus()).filter((g) => g.heldBy.includes("hold-two")).map((g) => g.uuid);
		expect(held.sort()).toEqual([...a.body.gpus].sort());
		// Held from its spawn on; its shell's echo may come a moment later on a loaded machine.
		const logs = await until(
			async () => (await (await fetch(`${queen.url}/v1/workers/hold-two/logs?hive=l40s`)).text()).trim() || null,
			5000,
			"hold-two's output",
		);
		expect(logs).toBe(a.body.gpus.join(","));
		// l40s: 1 free left; a100: 6 free. Best fit takes the one.
		const b = await post({ id: "one-gpu", command: ["sleep", "30"], gpus: { count: 1 } });
		expect(b.status).toBe(201);
		expect(b.body.hiveId).toBe("l40s");
		for (const id of ["hold-two", "one-gpu"]) expect((await json(`${queen.url}/v1/workers/${id}?hive=l40s`, { method: "DELETE" })).status).toBe(200);
		await until(async () => (await claims()).length === 0, 5000, "claims released when their workers ended");
	});

	it("30 concurrent placements of 2 GPUs each on 8 free GPUs: never more than 8 held, none twice, none partial, all run in arrival order", async () => {
		let worst = 0;
		let doubled = false;
		let watching = true;
		const watch = (async () => {
			while (watching) {
				const idle = (await gpus()).filter((g) => g.hiveId === "idle");
				const taken = idle.filter((g) => g.heldBy.length > 0 || g.claimId !== null);
				worst = Math.max(worst, taken.length);
				if (idle.some((g) => g.heldBy.length > 1)) doubled = true;
				await sleep(20);
			}
		})();
		const answers: Promise<{ status: number; body: PlacementAnswer & { message: string } }>[] = [];
		for (let i = 0; i < 30; i++) {
			let answered = false;
			const a = post({ id: `burst-${i}`, command: ["sleep", "0.3"], gpus: { count: 2 }, constraints: { pool: "idle" }, waitMs: 60_000 });
			a.then(() => {
				answered = true;
			});
			answers.push(a);
			// The next is sent once this one has arrived (placed, or queued), so arrival order is the index.
			await until(
				async () => answered || (await json<PendingPlacements>(`${queen.url}/v1/placements`)).body.pending.some((p) => p.id === `burst-${i}`),
				10_000,
				`burst-${i} arrived`,
			);
		}
		const done = await Promise.all(answers);
		for (const d of done) expect(d.status, d.body.message).toBe(201);
		for (const d of done) expect(d.body.gpus).toHaveLength(2);
		await until(async () => (await json<QueenWorkerView[]>(`${queen.url}/v1/workers?hive=idle&state=exited`)).body.length >= 30, 60_000, "all 30 ran");
		watching = false;
		await watch;
		expect(worst).toBeLessThanOrEqual(8);
		expect(worst).toBeGreaterThan(2); // they did overlap
		expect(doubled).toBe(false);
		const ran = (await json<QueenWorkerView[]>(`${queen.url}/v1/workers?hive=idle&state=exited`)).body.filter((w) => w.id.startsWith("burst-"));
		const order = ran
			.sort((a, b) => Date.parse(a.startedAt) - Date.parse(b.startedAt) || Number(a.id.slice(6)) - Number(b.id.slice(6)))
			.map((w) => Number(w.id.slice(6)));
		// Started in arrival order (start times are ms: equal ones are the same grant round).
		for (let i = 1; i < order.length; i++) expect(order[i]!).toBeGreaterThan(order[i - 1]!);
		await until(async () => (await claims()).length === 0, 5000, "every claim released");
	}, 90_000);

	it("first come, first served on the same hives (no backfill), while requests for other hives go on", async () => {
		// l40s has 3 free GPUs; take 2, leaving 1.
		const held = await Promise.all([0, 1].map((i) => post({ id: `l40s-${i}`, command: ["sleep", "60"], gpus: { count: 1 }, constraints: { pool: "l40s" } })));
		for (const h of held) expect(h.status).toBe(201);
		// A 3-GPU waiter on l40s cannot fit yet…
		const big = post({ id: "big", command: ["sleep", "60"], gpus: { count: 3 }, constraints: { pool: "l40s" }, waitMs: 20_000 });
		await until(async () => (await json<PendingPlacements>(`${queen.url}/v1/placements`)).body.pending.some((p) => p.id === "big"), 5000, "big queued");
		// …and the one free GPU is not taken from under it, neither at once nor by a later waiter.
		const now = await post({ command: ["true"], gpus: { count: 1 }, constraints: { pool: "l40s" } });
		expect(now.status).toBe(409);
		expect(now.body.message).toBe("1 placements wait ahead of this one for the same hives (first come, first served): pass waitMs to queue");
		const small = post({ id: "small", command: ["sleep", "60"], gpus: { count: 1 }, constraints: { pool: "l40s" }, waitMs: 20_000 });
		await until(
			async () => (await json<PendingPlacements>(`${queen.url}/v1/placements`)).body.pending.map((p) => p.id).join() === "big,small",
			5000,
			"small behind big",
		);
		// Other hives are not held up by them.
		const elsewhere = await post({ id: "elsewhere", command: ["true"], gpus: { count: 1 }, constraints: { pool: "idle" } });
		expect(elsewhere.status).toBe(201);
		// Two GPUs come back: big (first) takes all three, small waits on.
		for (const h of held) await json(`${queen.url}/v1/workers/${h.body.id}`, { method: "DELETE" });
		expect((await big).status).toBe(201);
		expect((await json<PendingPlacements>(`${queen.url}/v1/placements`)).body.pending.map((p) => p.id)).toEqual(["small"]);
		await json(`${queen.url}/v1/workers/big`, { method: "DELETE" });
		expect((await small).status).toBe(201);
		await json(`${queen.url}/v1/workers/small`, { method: "DELETE" });
		await until(async () => (await claims()).length === 0, 5000, "claims released");
	});

	it("a placement that cannot fit is a 409 with a diagnosis, and a placement.failed event; a hive with --no-remote-spawn is never used", async () => {
		const events = new AbortController();
		const seen: string[] = [];
		const reading = fetch(`${queen.url}/v1/events?types=placement.failed`, { signal: events.signal }).then(async (res) => {
			const dec = new TextDecoder();
			for await (const chunk of res.body!) seen.push(dec.decode(chunk));
		});
		const r = await post({ command: ["true"], gpus: { count: 9, minMemoryMiB: 40_960 } });
		expect(r.status).toBe(409);
		expect(r.body.message).toBe("need 9 GPUs with ≥ 40960 MiB on one hive: 1 hive has 8 free; 1 hive has 6 free; 1 hive has 3 free; 1 hive has 0 free");
		await until(() => seen.join("").includes("event: placement.failed"), 5000, "placement.failed on the stream");
		events.abort();
		await reading.catch(() => {});
		const local = await post({ command: ["true"], hive: "local" });
		expect(local.status).toBe(409);
		expect(local.body.message).toMatch(/hive local refuses placements \(--no-remote-spawn\)/);
	});

	it("MIG instances are placed by their own UUIDs, one to a worker", async () => {
		const all = await gpus();
		const instances = all.filter((g) => g.hiveId === "h100" && g.migParent);
		expect(instances.map((g) => g.name)).toEqual(["NVIDIA H100 80GB HBM3 MIG 3g.40gb", "NVIDIA H100 80GB HBM3 MIG 3g.40gb"]);
		expect(all.find((g) => g.hiveId === "h100" && !g.migParent)!.free).toBe(false); // the MIG-mode GPU itself
		const a = await post({ id: "on-mig", command: ["sh", "-c", "echo $CUDA_VISIBLE_DEVICES; sleep 30"], gpus: { count: 1 }, hive: "h100" });
		expect(a.status).toBe(201);
		expect(a.body.gpus).toHaveLength(1);
		expect(a.body.gpus[0]).toMatch(/^MIG-/);
		expect(instances.map((g) => g.uuid)).toContain(a.body.gpus[0]);
		await until(async () => (await gpus()).find((g) => g.uuid === a.body.gpus[0])!.heldBy.includes("on-mig"), 10_000, "the instance held");
		await until(async () => (await (await fetch(`${queen.url}/v1/workers/on-mig/logs`)).text()).trim() === a.body.gpus[0], 10_000, "the worker saw it");
		// Two instances are not one worker's GPUs: CUDA would see only one.
		expect((await post({ command: ["true"], gpus: { count: 2 }, hive: "h100" })).status).toBe(409);
		expect((await json(`${queen.url}/v1/workers/on-mig`, { method: "DELETE" })).status).toBe(200);
	});

	it("with claimId the worker runs on exactly the claim's GPUs, and the claim stays its holder's after the worker ends", async () => {
		const c = await json<Claim>(`${queen.url}/v1/claims`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ count: 2, sameHive: true, ttlSeconds: 600, holder: "scheduler-7" }),
		});
		expect(c.status).toBe(201);
		const r = await runCli("queen", [
			"run",
			"--queen",
			queen.url,
			"--claim",
			c.body.id,
			"--holder",
			"scheduler-7",
			"--",
			"sh",
			"-c",
			"echo $CUDA_VISIBLE_DEVICES",
		]);
		expect(r.code).toBe(0);
		expect(r.stdout.trim().split(",").sort()).toEqual(c.body.gpus.map((g) => g.uuid).sort());
		const still = (await claims()).find((x) => x.id === c.body.id);
		expect(still?.holder).toBe("scheduler-7");
		expect((await json(`${queen.url}/v1/claims/${c.body.id}`, { method: "DELETE" })).status).toBe(200);
		expect((await post({ command: ["true"], claimId: "c-000000000000", holder: "scheduler-7" })).status).toBe(404);
	});

	it("a retry with the same idempotencyKey returns the same worker, never a second", async () => {
		const body = { command: ["sleep", "30"], constraints: { pool: "a100" }, idempotencyKey: "ci-job-42" };
		const [a, b] = await Promise.all([post(body), post(body)]);
		const c = await post(body);
		expect(a.status).toBe(201);
		expect(b.body).toEqual(a.body);
		expect(c.body).toEqual(a.body);
		const running = (await json<QueenWorkerView[]>(`${queen.url}/v1/workers?state=running`)).body.filter((w) => w.id === a.body.id);
		expect(running).toHaveLength(1);
		await runCli("queen", ["kill", "--queen", queen.url, a.body.id]);
	});

	it("a hive killed mid-placement gives a clean failure, and a retry with the same key after it is back starts the worker once", async () => {
		const root = newCgroupRoot();
		roots.push(root);
		const args = { queen: queen.url, name: "flaky", stateDir: join(dir, "flaky"), cgroupRoot: root, nvidiaSmi: FAKE_SMI("no-driver") };
		let flaky = await startHive(args);
		await until(async () => (await json(`${queen.url}/v1/hives/flaky`)).body.state === "ready", 10_000, "flaky ready");
		const body = { id: "mid-flight", command: ["sleep", "30"], hive: "flaky", idempotencyKey: "mid-flight-1" };
		// Frozen, it cannot answer; killed, its socket closes with the command in flight.
		flaky.proc.kill("SIGSTOP");
		const first = post(body);
		await sleep(300);
		await flaky.stop("SIGKILL");
		const r1 = await first;
		expect(r1.status).toBe(503);
		expect(r1.body.message).toMatch(/hive flaky disconnected before answering; worker mid-flight may have started: retry with the same idempotencyKey/);
		flaky = await startHive({ ...args, port: flaky.port });
		hives.set("flaky", flaky);
		// The retry is answered once the hive has said (by its snapshot) whether the worker started.
		let r2 = await post(body);
		for (let i = 0; i < 50 && r2.status === 503; i++) {
			await sleep(200);
			r2 = await post(body);
		}
		expect(r2.status).toBe(201);
		expect(r2.body).toMatchObject({ id: "mid-flight", hiveId: "flaky" });
		expect((await post(body)).body).toEqual(r2.body);
		const onHive = (await json<{ id: string; state: string }[]>(`${flaky.url}/v1/workers?state=running`)).body.filter((w) => w.id === "mid-flight");
		expect(onHive).toHaveLength(1);
		await json(`${queen.url}/v1/workers/mid-flight?hive=flaky`, { method: "DELETE" });
	});

	it("Ctrl-C on queen run stops the remote worker gracefully (its trap runs), then queen run exits 130", async () => {
		const flag = join(dir, "trapped");
		const child = spawn(
			process.execPath,
			[
				QUEEN_BIN,
				"run",
				"--queen",
				queen.url,
				"--grace",
				"5s",
				"--",
				"sh",
				"-c",
				`trap 'echo got-term > ${flag}; exit 0' TERM; echo ready; while :; do sleep 0.1; done`,
			],
			{ stdio: ["ignore", "pipe", "pipe"] },
		);
		let out = "";
		child.stdout.on("data", (d) => {
			out += d;
		});
		const code = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
		await until(() => out.includes("ready"), 15_000, "the worker's first output through queen run");
		child.kill("SIGINT");
		expect(await code).toBe(130);
		expect(existsSync(flag)).toBe(true);
		expect(readFileSync(flag, "utf8").trim()).toBe("got-term");
	});

	it("queen kill and queen logs work on any worker the queen knows; bad input is exit 2", async () => {
		const a = await post({ id: "chatty", command: ["sh", "-c", "for i in 1 2 3 4 5; do echo line-$i; done; sleep 30"], hive: "a100" });
		expect(a.status).toBe(201);
		await until(async () => (await fetch(`${queen.url}/v1/workers/chatty/logs`)).text().then((t) => t.includes("line-5")), 10_000, "output");
		const logs = await runCli("queen", ["logs", "--queen", queen.url, "chatty", "-n", "2"]);
		expect(logs.stdout).toBe("line-4\nline-5\n");
		const k = await runCli("queen", ["kill", "--queen", queen.url, "chatty"]);
		expect(k.stdout).toBe("chatty: killed (graceful)\n");
		expect((await runCli("queen", ["run", "--queen", queen.url, "--gpus", "lots", "--", "true"])).code).toBe(2);
		expect((await runCli("queen", ["logs", "--queen", queen.url, "../x"])).code).toBe(2);
		expect((await json(`${queen.url}/v1/workers/nobody/logs`)).status).toBe(404);
	});
});

describe("queen run when the worker's hive is lost", () => {
	const dir = tempDir("place-lost");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "queen.db"), staleAfter: "1s", evictAfter: "3s" });
		hive = await startHive({ queen: queen.url, name: "doomed", stateDir: join(dir, "h"), cgroupRoot: root, nvidiaSmi: FAKE_SMI("no-driver") });
		await until(async () => (await json(`${queen.url}/v1/hives/doomed`)).body.state === "ready", 10_000, "hive ready");
	});
	afterAll(async () => {
		await hive?.stop();
		await queen?.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("exits 4 once the queen declares the hive lost", async () => {
		const child = spawn(process.execPath, [QUEEN_BIN, "run", "--queen", queen.url, "--", "sh", "-c", "echo up; sleep 60"], {
			stdio: ["ignore", "pipe", "pipe"],
		});
		let out = "";
		let err = "";
		child.stdout.on("data", (d) => {
			out += d;
		});
		child.stderr.on("data", (d) => {
			err += d;
		});
		const code = new Promise<number | null>((resolve) => child.on("exit", (c) => resolve(c)));
		await until(() => out.includes("up"), 15_000, "the worker running");
		await hive.stop("SIGKILL");
		expect(await code).toBe(4);
		expect(err).toMatch(/was lost with its hive doomed/);
	}, 30_000);
});
