import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { LOG_WINDOW, type ReplyMessage } from "@apiary/protocol";
import { describe, expect, it } from "vitest";
import { runCommand } from "../../src/commands.ts";
import type { Hive } from "../../src/hive.ts";

// The queen's commands on the socket are refused exactly as the hive's own
// API refuses them; a hive with --no-remote-spawn refuses spawns with a reason.
function harness(o: { remoteSpawn?: boolean } = {}) {
	const replies: ReplyMessage[] = [];
	const spawned: unknown[] = [];
	const hive = {
		hiveId: "h1",
		spawn: async (b: unknown) => {
			spawned.push(b);
			return { id: "w1", env: { SECRET: "x" } };
		},
		get: () => undefined,
	} as unknown as Hive;
	const ctx = { hive, remoteSpawn: o.remoteSpawn ?? true, reply: (m: ReplyMessage) => replies.push(m), chunk: () => {} };
	return { ctx, replies, spawned };
}

describe("queen commands on the hive", () => {
	it("a spawn is validated against the API's own schema (a 400 naming the field) and never reaches the supervisor when bad", () => {
		const { ctx, replies, spawned } = harness();
		runCommand({ type: "command", id: "c1", op: "spawn", body: { command: [] } as never }, ctx);
		expect(replies).toEqual([{ type: "reply", id: "c1", status: 400, error: "body.command must NOT have fewer than 1 items" }]);
		runCommand({ type: "command", id: "c2", op: "spawn", body: { command: ["true"], bogus: 1 } as never }, ctx);
		expect(replies[1]).toMatchObject({ status: 400, error: expect.stringMatching(/additional properties/) });
		expect(spawned).toEqual([]);
	});

	it("a good spawn answers 201 with the worker, env values redacted", async () => {
		const { ctx, replies, spawned } = harness();
		runCommand({ type: "command", id: "c3", op: "spawn", body: { command: ["true"] } }, ctx);
		await new Promise((r) => setImmediate(r));
		expect(spawned).toEqual([{ command: ["true"] }]);
		expect(replies).toEqual([{ type: "reply", id: "c3", status: 201, body: { id: "w1", env: { SECRET: "<redacted>" } } }]);
	});

	it("--no-remote-spawn refuses the queen's spawns with a reason (403); stop and logs of an unknown worker are 404s", () => {
		const { ctx, replies, spawned } = harness({ remoteSpawn: false });
		runCommand({ type: "command", id: "c4", op: "spawn", body: { command: ["true"] } }, ctx);
		expect(replies[0]).toEqual({
			type: "reply",
			id: "c4",
			status: 403,
			error: "hive h1 was started with --no-remote-spawn: it runs only workers spawned on its own API",
		});
		expect(spawned).toEqual([]);
		runCommand({ type: "command", id: "c5", op: "stop", workerId: "nope" }, ctx);
		runCommand({ type: "command", id: "c6", op: "logs", workerId: "nope", query: {} }, ctx);
		expect(replies.slice(1).map((r) => [r.status, r.error])).toEqual([
			[404, "no worker nope on hive h1"],
			[404, "no worker nope on hive h1"],
		]);
	});

	it("a logs command sends no more than its credit (LOG_WINDOW before any), and goes on as credit comes, to the last byte", async () => {
		const dir = mkdtempSync(join(tmpdir(), "apiary-credit-"));
		try {
			const size = 3 * LOG_WINDOW + 12345;
			writeFileSync(join(dir, "w1.log"), Buffer.alloc(size, "z"));
			const hive = { hiveId: "h1", get: () => ({ state: "exited" }), logPath: () => join(dir, "w1.log") } as unknown as Hive;
			const replies: ReplyMessage[] = [];
			let got = 0;
			const ctl = runCommand(
				{ type: "command", id: "l1", op: "logs", workerId: "w1", query: {} },
				{ hive, remoteSpawn: true, reply: (m) => replies.push(m), chunk: (_id, b) => (got += b.length) },
			)!;
			const settled = async () => {
				for (let before = -1; before !== got; ) {
					before = got;
					await sleep(50);
				}
			};
			await settled();
			expect(got).toBe(LOG_WINDOW);
			ctl.credit(LOG_WINDOW + 1000); // less than a chunk more: nothing is split to fit
			await settled();
			expect(got).toBe(LOG_WINDOW);
			ctl.credit(2 * LOG_WINDOW);
			await settled();
			expect(got).toBe(2 * LOG_WINDOW);
			expect(replies).toEqual([]);
			ctl.credit(size);
			await settled();
			expect(got).toBe(size);
			expect(replies).toEqual([{ type: "reply", id: "l1", status: 200 }]);
		} finally {
			rmSync(dir, { recursive: true, force: true });
		}
	});
});
