import { type Postgres, startPostgres } from "@apiary/test-support/postgres";

// The postgres tier's queen suites share one real server: each queen gets a
// database of its own on it (@apiary/test-support/queen-db).
let server: Postgres | null = null;

export async function setup(): Promise<void> {
	server = await startPostgres();
	process.env.APIARY_TEST_PG = server.url;
}

export async function teardown(): Promise<void> {
	await server?.stop();
}
