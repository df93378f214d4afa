import { join } from "node:path";
import pg from "pg";
import { type Postgres, startPostgres } from "@apiary/test-support/postgres";
import { removeDir, startQueen, tempDir } from "@apiary/test-support/procs";
import { ctx, log, r3 } from "../lib.ts";
import { drive } from "./ingest.ts";

// The queen on PostgreSQL beside the queen on SQLite, same load, same run:
// queen CPU per heartbeat (goal ≤ 1.3× SQLite's) and PostgreSQL row writes per
// hive per minute in steady state (goal ≤ 12: one per hive per 5 s), counted
// by the queen from each statement's row count (/metrics). A real server,
// started for the section.
/** A counter of the queen's /metrics. */
async function counter(queenUrl: string, name: string): Promise<number> {
	const text = await (await fetch(`${queenUrl}/metrics`)).text();
	const m = new RegExp(`^${name} (\\S+)$`, "m").exec(text);
	if (!m) throw new Error(`${name} is not in the queen's /metrics`);
	return Number(m[1]);
}

export async function pgStore() {
	const hives = Number(process.env.BENCH_HIVES ?? (ctx.quick ? 5 : 300));
	const seconds = Number(process.env.BENCH_SECONDS ?? (ctx.quick ? 2 : 15));
	const warmup = ctx.quick ? 1 : 5;
	const dir = tempDir("bench-pg");
	let server: Postgres | null = null;
	try {
		server = await startPostgres();
		const url = server.url;
		const perBeat = (r: Awaited<ReturnType<typeof drive>>) => r.cpuMs / r.sent;
		// SQLite, then PostgreSQL and SQLite again, `rounds` times: each
		// PostgreSQL run against the mean of the SQLite runs either side of it,
		// and the median of those ratios (this machine's speed moves by a third
		// within minutes; one pair was at its mercy).
		const rounds = Number(process.env.BENCH_PG_ROUNDS ?? (ctx.quick ? 1 : 3));
		const sqlite: number[] = [];
		const lite = async () => {
			const q = await startQueen({ db: join(dir, `q${sqlite.length}.db`), staleAfter: "30s", evictAfter: "300s", sqlite: true });
			try {
				sqlite.push(perBeat(await drive(q.url, q.proc.pid!, hives, seconds, true, warmup)));
			} finally {
				await q.stop();
			}
		};
		const onPg: number[] = [];
		const writes: number[] = [];
		const commits: number[] = [];
		const postgres = async () => {
			// Each round on a database of its own, empty, as the first was.
			const name = `bench_${onPg.length}`;
			const admin = new pg.Client({ connectionString: url });
			await admin.connect();
			await admin.query(`CREATE DATABASE ${name}`);
			await admin.end();
			const q = await startQueen({ db: url.replace(/\/postgres$/, `/${name}`), staleAfter: "30s", evictAfter: "300s", sqlite: true });
			try {
				// Steady state only: the counters are read around the measured window, after the join and warm-up.
				let w0 = 0;
				let w1 = 0;
				let c0 = 0;
				let c1 = 0;
				const r = await drive(q.url, q.proc.pid!, hives, seconds, true, warmup, {
					before: async () => {
						w0 = await counter(q.url, "apiary_queen_db_rows_written_total");
						c0 = await counter(q.url, "apiary_queen_db_commits_total");
					},
					after: async () => {
						w1 = await counter(q.url, "apiary_queen_db_rows_written_total");
						c1 = await counter(q.url, "apiary_queen_db_commits_total");
					},
				});
				onPg.push(perBeat(r));
				writes.push(((w1 - w0) / hives / r.elapsedS) * 60);
				commits.push((c1 - c0) / r.elapsedS);
			} finally {
				await q.stop();
			}
		};
		await lite();
		for (let i = 0; i < rounds; i++) {
			await postgres();
			await lite();
		}
		const ratios = onPg.map((p, i) => p / ((sqlite[i]! + sqlite[i + 1]!) / 2));
		const median = [...ratios].sort((a, b) => a - b)[Math.floor(ratios.length / 2)]!;
		const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / xs.length;
		ctx.results.pg = {
			hives,
			workersPerHive: 50,
			seconds,
			rounds,
			queenCpuPerHeartbeatMs: { sqlite: sqlite.map(r3), postgres: onPg.map(r3) },
			postgresOverSqlite: r3(median),
			postgresOverSqliteEachRound: ratios.map(r3),
			rowWritesPerHivePerMinute: r3(mean(writes)),
			commitsPerSecond: r3(mean(commits)),
		};
		log(
			`   ${hives} hives × 50 workers at 1 Hz for ${seconds} s, ${rounds} rounds: queen CPU per heartbeat on PostgreSQL ${onPg.map(r3).join(" / ")} ms, on SQLite ${sqlite.map(r3).join(" / ")} ms (the runs around them): ${ratios.map(r3).join(" / ")}×, median ${r3(median)}× (goal ≤ 1.3×)`,
		);
		log(
			`   PostgreSQL row writes in steady state: ${writes.map(r3).join(" / ")} per hive per minute (goal ≤ 12: one per hive per 5 s), in ${commits.map(r3).join(" / ")} commits/s`,
		);
	} finally {
		await server?.stop();
		removeDir(dir);
	}
}
