import { ErrorBody, GpusQuery, GpuView, HiveIdQuery, HiveView, IdParams, QueenWorkersQuery, QueenWorkerView, ExitRecord, Type } from "@apiary/protocol";
import type { FastifyPluginAsyncTypebox } from "@fastify/type-provider-typebox";
import { type Registry, RegistryError } from "../registry.ts";

/** A worker with every exit record the queen has for it (a re-used id has several). */
const WorkerDetail = Type.Composite([QueenWorkerView, Type.Object({ exits: Type.Array(ExitRecord) })]);

/** Hives, workers and GPUs: the read side of the registry. */
export const fleetRoutes: FastifyPluginAsyncTypebox<{ registry: Registry }> = async (app, o) => {
	const { registry } = o;
	app.get("/v1/hives", { schema: { response: { 200: Type.Array(HiveView) } } }, async () => registry.listHives());
	app.get("/v1/hives/:id", { schema: { params: IdParams, response: { 200: HiveView, 404: ErrorBody } } }, async (req) => {
		const h = registry.getHive(req.params.id);
		if (!h) throw new RegistryError(404, `no hive ${req.params.id}`);
		return h;
	});
	app.get("/v1/workers", { schema: { querystring: QueenWorkersQuery, response: { 200: Type.Array(QueenWorkerView) } } }, async (req) => {
		const q = req.query;
		const i = q.label?.indexOf("=") ?? -1;
		return registry.listWorkers({ hive: q.hive, state: q.state ?? "all", label: q.label ? [q.label.slice(0, i), q.label.slice(i + 1)] : undefined });
	});
	app.get("/v1/workers/:id", { schema: { params: IdParams, querystring: HiveIdQuery, response: { 200: WorkerDetail, 404: ErrorBody } } }, async (req) => {
		const w = registry.findWorker(req.params.id, req.query.hive);
		return { ...w, exits: await registry.exitsOf(w.hiveId, w.id) };
	});
	app.get("/v1/gpus", { schema: { querystring: GpusQuery, response: { 200: Type.Array(GpuView) } } }, async (req) => {
		const q = req.query;
		return registry.listGpus({
			free: q.free === undefined ? undefined : q.free === "true",
			minMemoryMiB: q.minMemoryMiB === undefined ? undefined : Number(q.minMemoryMiB),
			name: q.name,
			hive: q.hive,
		});
	});
};
