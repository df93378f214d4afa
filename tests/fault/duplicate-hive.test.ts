import { join } from "node:path";
import type { QueenEvent } from "@apiary/protocol";
import { type Daemon, json, newCgroupRoot, removeCgroupRoot, removeDir, startHive, startQueen, tempDir } from "@apiary/test-support/procs";
import { sleep, until } from "@apiary/test-support/util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Two hives started with one name on one queen used to replace each other
// on every reconnect (92 hive.restarted in 21 s). A hive id is held by one
// live hive; the newcomer is refused with a reason and changes nothing.
describe("two hives with one name", () => {
	const dir = tempDir("fault-dup");
	const roots = [newCgroupRoot(), newCgroupRoot()];
	let queen: Daemon;
	let first: Daemon;
	let second: Daemon | null = null;
	beforeAll(async () => {
		queen = await startQueen({ db: join(dir, "q.db"), staleAfter: "2s", evictAfter: "20s" });
		first = await startHive({ queen: queen.url, name: "twin", stateDir: join(dir, "a"), cgroupRoot: roots[0]! });
		await until(async () => (await json(`${queen.url}/v1/hives/twin`)).body?.state === "ready", 10_000, "first ready");
	});
	afterAll(async () => {
		await second?.stop();
		await first.stop();
		await queen.stop();
		for (const r of roots) await removeCgroupRoot(r);
		removeDir(dir);
	});

	it("the second is refused with a reason; the first keeps the id, undisturbed, and is not marked left when the second stops", async () => {
		const firstInstance = (await json(`${first.url}/healthz`)).body.instanceId as string;
		const since = (await json(`${queen.url}/healthz`)).body.lastEventId as number;
		second = await startHive({ queen: queen.url, name: "twin", stateDir: join(dir, "b"), cgroupRoot: roots[1]! });
		await until(() => /the queen refused this hive/.test(second!.err()), 10_000, "the refusal in the second's log");
		expect(second.err()).toMatch(/hive id twin is held by a live hive at [\d.:a-f]+; give this one another --name/);
		// The second keeps retrying and keeps being refused, backing off: a refusal is not a blip (it retried
		// ~40 times in 7 s when each open reset its backoff; equal jitter from 500 ms allows at most 5).
		await sleep(7000);
		const refusals = second.err().match(/the queen refused this hive/g)?.length ?? 0;
		expect(refusals).toBeGreaterThanOrEqual(2);
		expect(refusals).toBeLessThanOrEqual(6);
		const hive = (await json(`${queen.url}/v1/hives/twin`)).body;
		expect(hive).toMatchObject({ state: "ready", instanceId: firstInstance });
		const events = q(await fetchEvents(queen.url, since));
		expect(events.filter((e) => e.type === "hive.restarted")).toEqual([]);
		expect(events.filter((e) => e.type === "hive.joined")).toEqual([]);
		await second.stop();
		second = null;
		await sleep(1500);
		expect((await json(`${queen.url}/v1/hives/twin`)).body).toMatchObject({ state: "ready", instanceId: firstInstance });
		expect(q(await fetchEvents(queen.url, since)).filter((e) => e.type === "hive.left")).toEqual([]);
	});
});

const q = (events: QueenEvent[]) => events.filter((e) => e.hiveId === "twin");

/** The lifecycle events after `since`, replayed from the queen's log (the stream, read until quiet). */
async function fetchEvents(url: string, since: number): Promise<QueenEvent[]> {
	const ac = new AbortController();
	const res = await fetch(`${url}/v1/events?since=${since}&types=hive.*`, { signal: ac.signal });
	const reader = res.body!.getReader();
	let text = "";
	const decoder = new TextDecoder();
	for (;;) {
		const r = await Promise.race([reader.read(), sleep(700).then(() => null)]);
		if (!r || r.done) break;
		text += decoder.decode(r.value, { stream: true });
	}
	ac.abort();
	return [...text.matchAll(/^data: (.*)$/gm)].map((m) => JSON.parse(m[1]!) as QueenEvent);
}
