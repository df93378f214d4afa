import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { type Browser, chromium, type Page } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { requireTools } from "@apiary/test-support/requires";
import { until } from "@apiary/test-support/util";
import { exitedWorker, FakeHive } from "@apiary/test-support/fake-hive";
import { type Daemon, FAKE_SMI, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";

const ARTIFACTS = new URL("../../test-results/", import.meta.url).pathname;

// Debian's Chromium, headless, with the background networking this closed
// network would refuse turned off.
const CHROMIUM_ARGS = [
	"--headless",
	"--no-sandbox",
	"--disable-gpu",
	"--disable-quic",
	"--no-first-run",
	"--disable-background-networking",
	"--disable-component-update",
	"--disable-sync",
];

describe("the dashboard in a real browser", () => {
	const dir = tempDir("dash");
	const root = newCgroupRoot();
	let queen: Daemon;
	let hive: Daemon;
	let browser: Browser;
	let page: Page;
	const spawnWorker = (body: object) =>
		json(`${hive.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });

	beforeAll(async () => {
		if (!process.env.CHROMIUM) requireTools(["chromium"], "chromium");
		queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "1s", evictAfter: "3s" });
		hive = await startHive({
			queen: queen.url,
			name: "dash-hive",
			stateDir: join(dir, "hive"),
			cgroupRoot: root,
			nvidiaSmi: FAKE_SMI("a100x4"),
			interval: "300ms",
			extra: ["--label", "pool=a100"],
		});
		browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
		page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
		const errors: string[] = [];
		page.on("pageerror", (e) => errors.push(String(e)));
		await page.goto(queen.url);
		await page.waitForSelector("#conn.ok");
		expect(errors).toEqual([]);
	}, 60_000);
	afterAll(async () => {
		await browser?.close();
		await hive?.stop("SIGKILL");
		await queen?.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("shows the hive ready, its GPUs with their state", async () => {
		await page.waitForSelector('tr[data-hive="dash-hive"] [data-state="ready"]');
		expect(await page.locator('tr[data-hive="dash-hive"] td.labels').textContent()).toBe("pool=a100");
		const cards = await page.locator("[data-gpu]").count();
		expect(cards).toBe(4);
		expect(await page.locator("[data-gpu] [data-state='free']").count()).toBe(2); // GPUs 0 and 1 are in use in the recording
	});

	it("a spawned worker appears without a reload, with live CPU and memory sparklines", async () => {
		await spawnWorker({ id: "spinner", command: ["sh", "-c", "while :; do :; done"], cpu: 0.5, memoryBytes: 128 << 20, gpus: ["3"] });
		await page.waitForSelector('tr[data-worker="spinner"]', { timeout: 10_000 });
		// sparklines fill as worker.updated events arrive
		await until(
			async () => Number((await page.locator('tr[data-worker="spinner"] svg.cpu').getAttribute("data-points")) ?? 0) >= 3,
			15_000,
			"a CPU sparkline of 3 points",
		);
		const cpuText = await page.locator('tr[data-worker="spinner"] td.num').first().textContent();
		expect(Number.parseFloat(cpuText!)).toBeGreaterThan(20);
		const gpu3 = page.locator("[data-gpu]", { hasText: "GPU 3" }).locator("[data-state]");
		await gpu3.filter({ hasText: "held by spinner" }).waitFor({ timeout: 10_000 });
		mkdirSync(ARTIFACTS, { recursive: true });
		await page.screenshot({ path: join(ARTIFACTS, "dashboard-live.png"), fullPage: true });
	});

	it("an OOM kill is highlighted in the exits", async () => {
		await spawnWorker({ id: "hog", command: ["node", "-e", "const a=[];for(;;)a.push(Buffer.alloc(1<<20,1))"], memoryBytes: 64 << 20 });
		await page.waitForSelector('tr.oom[data-exit="hog"]', { timeout: 20_000 });
		expect(await page.locator('tr[data-exit="hog"] td.result').textContent()).toMatch(/OOM-killed/);
	});

	it("a worker placed through the queen shows its hive and GPUs; waiting placements are counted", async () => {
		const place = (body: object) =>
			json(`${queen.url}/v1/workers`, { method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body) });
		// GPU 3 is the spinner's, 0 and 1 are busy in the recording: GPU 2 is the one free.
		const placed = await place({ id: "placed", command: ["sleep", "60"], gpus: { count: 1 } });
		expect(placed.status).toBe(201);
		const row = page.locator('tr[data-worker="placed"]');
		await row.waitFor({ timeout: 10_000 });
		expect(await row.locator("td").nth(1).textContent()).toBe("dash-hive");
		expect(await row.locator("td.gpus .label").getAttribute("title")).toBe(placed.body.gpus[0]);
		const waiters = [place({ command: ["true"], gpus: { count: 1 }, waitMs: 4000 }), place({ command: ["true"], gpus: { count: 1 }, waitMs: 4000 })];
		await page.locator("#pending", { hasText: "2 placements waiting" }).waitFor({ timeout: 5000 });
		await page.screenshot({ path: join(ARTIFACTS, "dashboard-placement.png"), fullPage: true });
		for (const w of await Promise.all(waiters)) expect(w.status).toBe(409); // GPU 2 stayed held
		await page.locator("#pending").waitFor({ state: "hidden", timeout: 5000 });
		expect((await json(`${queen.url}/v1/workers/placed`, { method: "DELETE" })).status).toBe(200);
	});

	it("a sharded run shows a bar per shard, live, and how each ended", async () => {
		const posted = await json<{ id: string }>(`${queen.url}/v1/runs`, {
			method: "POST",
			headers: { "content-type": "application/json" },
			body: JSON.stringify({ command: ["sh", "-c", 'sleep 2; [ "$APIARY_SHARD_INDEX" = 1 ] && exit 5; exit 0'], shards: 3 }),
		});
		expect(posted.status).toBe(201);
		const row = page.locator(`tr[data-run="${posted.body.id}"]`);
		await row.locator('.shards [data-state="running"]').first().waitFor({ timeout: 10_000 });
		await row.locator('[data-state="failed"]').first().waitFor({ timeout: 20_000 });
		await until(async () => (await row.locator("td").nth(1).locator("[data-state]").getAttribute("data-state")) === "failed", 10_000, "the run failed");
		const segs = row.locator(".shards > span");
		expect(await segs.evaluateAll((els) => els.map((e) => e.getAttribute("data-state")))).toEqual(["passed", "failed", "passed"]);
		expect(await segs.nth(1).getAttribute("title")).toMatch(/^\[2\/3\] failed \(5\) on dash-hive, \d+\.\ds$/);
		expect(await row.locator("td").nth(3).textContent()).toBe("2 passed, 1 failed");
		await page.screenshot({ path: join(ARTIFACTS, "dashboard-runs.png"), fullPage: true });
	});

	it("a killed hive turns lost, and a screenshot is kept", async () => {
		await hive.stop("SIGKILL");
		await page.waitForSelector('tr[data-hive="dash-hive"] [data-state="stale"]', { timeout: 10_000 });
		await page.waitForSelector('tr[data-hive="dash-hive"] [data-state="lost"]', { timeout: 10_000 });
		await page.locator('tr[data-worker="spinner"]').waitFor({ state: "detached", timeout: 10_000 });
		expect(await page.locator('tr[data-exit="spinner"] td.result').textContent()).toMatch(/evicted: its hive was lost/);
		await page.screenshot({ path: join(ARTIFACTS, "dashboard-hive-lost.png"), fullPage: true });
	});
});

describe("the dashboard of a queen with a token", () => {
	const dir = tempDir("dash-token");
	let queen: Daemon;
	let hive: Daemon;
	let browser: Browser;
	const root = newCgroupRoot();
	beforeAll(async () => {
		if (!process.env.CHROMIUM) requireTools(["chromium"], "chromium");
		const tokenFile = join(dir, "token");
		writeFileSync(tokenFile, "dash-s3cret\n");
		queen = await startQueen({ db: join(dir, "q.db"), tokenFile });
		hive = await startHive({ queen: queen.url, name: "tok-hive", stateDir: join(dir, "hive"), cgroupRoot: root, tokenFile });
		browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
	});
	afterAll(async () => {
		await browser?.close();
		await hive?.stop();
		await queen?.stop();
		await removeCgroupRoot(root);
		removeDir(dir);
	});

	it("asks for the token once, then shows the fleet live; the data routes refuse requests without it", async () => {
		expect((await fetch(`${queen.url}/v1/hives`)).status).toBe(401);
		const page = await browser.newPage();
		await page.goto(queen.url);
		await page.locator("#login").waitFor({ state: "visible", timeout: 10_000 });
		expect(await page.locator("#login-msg").textContent()).toMatch(/needs a token/);
		await page.fill("#token", "dash-s3cret");
		await page.click('#login button[type="submit"]');
		await page.waitForSelector('tr[data-hive="tok-hive"] [data-state="ready"]', { timeout: 15_000 });
		expect(await page.locator("#login").isHidden()).toBe(true);
		// Kept for the session: a reload does not ask again.
		await page.reload();
		await page.waitForSelector('tr[data-hive="tok-hive"] [data-state="ready"]', { timeout: 15_000 });
		expect(await page.locator("#login").isHidden()).toBe(true);
		mkdirSync(ARTIFACTS, { recursive: true });
		await page.screenshot({ path: join(ARTIFACTS, "dashboard-token.png"), fullPage: true });
		await page.close();
	});
});

describe("the dashboard's right-sizing panel", () => {
	const dir = tempDir("dash-advise");
	let queen: Daemon;
	let browser: Browser;
	let fake: FakeHive;
	const GiB = 2 ** 30;
	const MiB = 2 ** 20;
	let seq = 0;
	const send = (i: number) =>
		fake.send({
			type: "event",
			seq: ++seq,
			event: "worker.exited",
			worker: exitedWorker(`e2e-${i}`, {
				startedAt: Date.now() - 3_600_000 + i * 1000,
				durationMs: 120_000,
				peakBytes: (600 + (i % 7) * 20) * MiB,
				cores: 0.4 + (i % 5) * 0.05,
				profile: "e2e_background",
				labels: { suite: "checkout" },
				limits: { cpu: 0.9, memoryBytes: 4 * GiB, pids: null, timeoutMs: 3_600_000 },
			}),
		});
	beforeAll(async () => {
		if (!process.env.CHROMIUM) requireTools(["chromium"], "chromium");
		queen = await startQueen({ db: join(dir, "q.db") });
		fake = new FakeHive(queen.url, "advise-hive");
		await fake.opened();
		fake.hello();
		for (let i = 0; i < 25; i++) send(i);
		await until(async () => (await json(`${queen.url}/v1/recommendations`)).body.groups[0]?.runs === 25, 10_000, "25 runs");
		browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: CHROMIUM_ARGS });
	});
	afterAll(async () => {
		fake?.close();
		await browser?.close();
		await queen?.stop();
		removeDir(dir);
	});

	it("shows each recommendation with its distribution, current and recommended marked, and follows new runs without a reload", async () => {
		const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
		await page.goto(queen.url);
		const card = page.locator('.card.advice[data-profile="e2e_background"]');
		await card.waitFor({ timeout: 10_000 });
		expect(await card.locator(".title").textContent()).toBe("e2e_background suite=checkout · 25 runs");
		const mem = card.locator('tr[data-resource="memory"]');
		// 4 GiB today; the heaviest run held 720 MiB → 720 × 1.15 rounded up to 16 MiB.
		expect(await mem.locator("td").nth(1).textContent()).toBe("4.0G → 832M");
		expect(await mem.locator("svg.dist").getAttribute("data-runs")).toBe("25");
		expect(await mem.locator("svg.dist line.recommended").count()).toBe(1);
		expect(await mem.locator("svg.dist line.current").count()).toBe(1);
		expect(await mem.locator("svg.dist rect").count()).toBeGreaterThan(1);
		expect(await card.locator('tr[data-resource="gpuMemory"] .rec').textContent()).toBe("none yet");
		for (let i = 25; i < 30; i++) send(i);
		await card.locator(".title", { hasText: "30 runs" }).waitFor({ timeout: 10_000 });
		expect(await mem.locator("svg.dist").getAttribute("data-runs")).toBe("30");
		mkdirSync(ARTIFACTS, { recursive: true });
		await page.screenshot({ path: join(ARTIFACTS, "dashboard-right-sizing.png"), fullPage: true });
		await page.close();
	});
});
