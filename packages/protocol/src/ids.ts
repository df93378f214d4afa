// Ids become cgroup directory and log file names, so they are restricted to a
// safe alphabet: no "/", no "..", no leading dot or dash.
export const ID_PATTERN = "^[a-z0-9][a-z0-9._-]{0,62}$";
const idRe = new RegExp(ID_PATTERN);

export function isValidId(id: string): boolean {
	return idRe.test(id) && !id.includes("..");
}

/** Throws an error naming `field` when `id` is not a valid id. */
export function checkId(id: string, field = "id"): string {
	if (!isValidId(id)) {
		throw new Error(`${field} ${JSON.stringify(id)} is not valid: use 1-63 characters of a-z 0-9 . _ - starting with a letter or digit, no ".."`);
	}
	return id;
}

/** A label's key (workers' and hives'): letters, digits, . _ / -, at most 63. */
export const LABEL_KEY_PATTERN = "^[A-Za-z0-9][A-Za-z0-9._/-]{0,62}$";
