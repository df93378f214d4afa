import { readFileSync } from "node:fs";

/** The version field of the package.json at `url` (a package's own, via import.meta.url). */
export function readVersion(url: URL): string {
	return (JSON.parse(readFileSync(url, "utf8")) as { version: string }).version;
}
