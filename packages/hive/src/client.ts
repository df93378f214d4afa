// A small HTTP client for the CLIs: JSON in and out, errors as messages.

export class ClientError extends Error {
	readonly status: number;
	constructor(status: number, message: string) {
		super(message);
		this.status = status;
	}
}

export async function call<T>(base: string, method: string, path: string, body?: unknown, token?: string | null): Promise<T> {
	const headers: Record<string, string> = {};
	if (body !== undefined) headers["content-type"] = "application/json";
	if (token) headers.authorization = `Bearer ${token}`;
	let res: Response;
	try {
		res = await fetch(new URL(path, base), { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
	} catch (err) {
		throw new ClientError(0, `cannot reach ${base}: ${(err as Error & { cause?: Error }).cause?.message ?? (err as Error).message}`);
	}
	const text = await res.text();
	const data = text ? JSON.parse(text) : null;
	if (!res.ok) throw new ClientError(res.status, data?.message ?? `${res.status} ${res.statusText}`);
	return data as T;
}
