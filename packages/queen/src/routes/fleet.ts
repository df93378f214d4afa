import {
	CordonBody,
	DrainBody,
	ErrorBody,
	GpusQuery,
	GpuView,
	HiveIdQuery,
	HiveView,
	IdParams,
	QueenWorkersQuery,
	QueenWorkerView,
	ExitRecord,
	Type,
} from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { type Registry, RegistryError } from "../registry.ts";
import { actorOf } from "../auth/authorize.ts";
import { DEFAULT_DRAIN_DEADLINE_S } from "../drain.ts";

/** A worker with every exit record the queen has for it (a re-used id has several). */
const WorkerDetail = Type.Composite([QueenWorkerView, Type.Object({ exits: Type.Array(ExitRecord) })]);

const DEFAULT_PAGE = 1000;

/** A page cursor: the last (hive, id) of the previous page, base64url; a malformed one is a 400. */
function decodeCursor(c: string): [string, string] {
	const parts = Buffer.from(c, "base64url").toString("utf8").split("\u0000");
	if (parts.length !== 2) throw new RegistryError(400, "querystring.cursor is not a cursor this queen gave (take it from x-next-cursor)");
	return [parts[0]!, parts[1]!];
}

/** Hives, workers and GPUs: the read side of the registry. */
export const fleetRoutes: FastifyPluginAsyncTypebox<{ registry: Registry }> = async (app, o) => {
	const { registry } = o;
	app.get("/v1/hives", { config: { role: "read" }, schema: { response: { 200: Type.Array(HiveView) } } }, async () => registry.listHives());
	app.get("/v1/hives/:id", { config: { role: "read" }, schema: { params: IdParams, response: { 200: HiveView, 404: ErrorBody } } }, async (req) => {
		const h = registry.getHive(req.params.id);
		if (!h) throw new RegistryError(404, `no hive ${req.params.id}`);
		return h;
	});

	// Cordon and drain (admin): out of rotation for maintenance, and back.
	const by = (req: unknown) => actorOf(req)?.name ?? null;
	const one = { params: IdParams, response: { 200: HiveView, 404: ErrorBody } };
	app.post("/v1/hives/:id/cordon", { config: { role: "admin" }, schema: { ...one, body: Type.Optional(CordonBody) } }, async (req) =>
		registry.exclusive(() => registry.changeDrain(req.params.id, { op: "cordon", reason: req.body?.reason ?? null, by: by(req) })),
	);
	app.post("/v1/hives/:id/drain", { config: { role: "admin" }, schema: { ...one, body: Type.Optional(DrainBody) } }, async (req) =>
		registry.exclusive(() =>
			registry.changeDrain(req.params.id, {
				op: "drain",
				reason: req.body?.reason ?? null,
				by: by(req),
				deadlineMs: (req.body?.deadlineSeconds ?? DEFAULT_DRAIN_DEADLINE_S) * 1000,
			}),
		),
	);
	app.post("/v1/hives/:id/uncordon", { config: { role: "admin" }, schema: one }, async (req) =>
		registry.exclusive(() => registry.changeDrain(req.params.id, { op: "uncordon", by: by(req) })),
	);

	app.get(
		"/v1/workers",
		{ config: { role: "read" }, schema: { querystring: QueenWorkersQuery, response: { 200: Type.Array(QueenWorkerView) } } },
		async (req, reply) => {
			const q = req.query;
			const i = q.label?.indexOf("=") ?? -1;
			// Paged: an answer is bounded however many workers the queen keeps (a probe's 100,000 took 2.1 s in one answer).
			const { items, next } = registry.pageWorkers({
				hive: q.hive,
				state: q.state ?? "all",
				label: q.label ? [q.label.slice(0, i), q.label.slice(i + 1)] : undefined,
				limit: q.limit === undefined ? DEFAULT_PAGE : Number(q.limit),
				after: q.cursor === undefined ? undefined : decodeCursor(q.cursor),
				recent: q.order === "recent",
			});
			if (next) {
				const cursor = Buffer.from(next.join("\u0000")).toString("base64url");
				const more = new URLSearchParams(req.query as Record<string, string>);
				more.set("cursor", cursor);
				reply.header("x-next-cursor", cursor).header("link", `</v1/workers?${more}>; rel="next"`);
			}
			return items;
		},
	);
	app.get(
		"/v1/workers/:id",
		{ config: { role: "read" }, schema: { params: IdParams, querystring: HiveIdQuery, response: { 200: WorkerDetail, 404: ErrorBody } } },
		async (req) => {
			const w = await registry.findWorkerAnywhere(req.params.id, req.query.hive);
			return { ...w, exits: await registry.exitsOf(w.hiveId, w.id) };
		},
	);
	app.get("/v1/gpus", { config: { role: "read" }, schema: { querystring: GpusQuery, response: { 200: Type.Array(GpuView) } } }, async (req) => {
		const q = req.query;
		return registry.listGpus({
			free: q.free === undefined ? undefined : q.free === "true",
			minMemoryMiB: q.minMemoryMiB === undefined ? undefined : Number(q.minMemoryMiB),
			name: q.name,
			hive: q.hive,
		});
	});
};
