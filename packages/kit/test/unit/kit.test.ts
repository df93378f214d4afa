import { describe, expect, it } from "vitest";
import { backoffDelay } from "../../src/backoff.ts";
import { keyValues, UsageError } from "../../src/cli.ts";
import { ManualClock } from "../../src/clock.ts";
import { HttpError } from "../../src/errors.ts";
import { createServer } from "../../src/server.ts";
import { defaultStateDir } from "../../src/state-dir.ts";
import { waitUntil } from "../../src/wait.ts";

describe("kit", () => {
	it("renders an HttpError through fastify's own error path with its status's label", async () => {
		const app = await createServer({ bodyLimit: 1024, token: null, openapi: { title: "t", version: "0", description: "d" } });
		app.get("/missing", async () => {
			throw new HttpError(404, "no worker w1");
		});
		app.get("/taken", async () => {
			throw new HttpError(409, "id w1 is already in use");
		});
		app.get("/full", async () => {
			throw new HttpError(507, "state dir is full");
		});
		const body = async (url: string) => (await app.inject({ url })).json();
		expect(await body("/missing")).toMatchObject({ statusCode: 404, error: "Not Found", message: "no worker w1" });
		expect(await body("/taken")).toMatchObject({ statusCode: 409, error: "Conflict" });
		expect(await body("/full")).toMatchObject({ statusCode: 507, error: "Insufficient Storage" });
		await app.close();
	});

	it("names the field in a validation error", async () => {
		const app = await createServer({ bodyLimit: 1024, token: null, openapi: { title: "t", version: "0", description: "d" } });
		app.post(
			"/x",
			{ schema: { body: { type: "object", additionalProperties: false, required: ["n"], properties: { n: { type: "integer" } } } } },
			async () => ({}),
		);
		const post = async (payload: object) => (await app.inject({ method: "POST", url: "/x", payload })).json();
		expect(await post({ n: "a" })).toMatchObject({ statusCode: 400, error: "Bad Request", message: "body.n must be integer" });
		expect(await post({ n: 1, bogus: 2 })).toMatchObject({ message: 'body: unknown field "bogus"' });
		expect(await post({})).toMatchObject({ message: 'body: missing field "n"' });
		await app.close();
	});

	it("waits on the monotonic clock and gives up at the deadline", async () => {
		const clock = new ManualClock();
		let polls = 0;
		const ok = await waitUntil(
			() => false,
			{ timeoutMs: 50, intervalMs: 0, clock },
			() => {
				polls++;
				clock.advance(10);
			},
		);
		expect(ok).toBe(false);
		expect(polls).toBe(5);
		expect(await waitUntil(() => true, { timeoutMs: 0, clock })).toBe(true);
	});

	it("puts state where the contract says", () => {
		expect(defaultStateDir("hive", { APIARY_STATE_DIR: "/s" }, 0)).toBe("/s");
		expect(defaultStateDir("queen", {}, 0)).toBe("/var/lib/apiary/queen");
		expect(defaultStateDir("hive", { HOME: "/home/u" }, 1000)).toBe("/home/u/.local/state/apiary/hive");
	});

	it("parses K=V flags and names the flag when one is malformed", () => {
		expect(keyValues("hive spawn", "env", ["A=1", "B=x=y"])).toEqual({ A: "1", B: "x=y" });
		expect(() => keyValues("hive spawn", "label", ["nokey"])).toThrow(new UsageError('hive spawn: --label: expected K=V, got "nokey"'));
	});

	it("backs off exponentially, never below 50 ms", () => {
		expect(backoffDelay(2, 500, 30_000, () => 1)).toBe(2000);
		expect(backoffDelay(0, 10, 30_000, () => 0)).toBe(50);
	});
});
