#!/usr/bin/env bash
# The machine set-up `npm test` runs first (idempotent): the Debian packages
# its tiers need, and (as root) the apiary-worker system user. As root, installs what is missing; otherwise names the
# packages to install and lets the tier that needs them fail with that name.
#
#   tool                          package          tier
#   prometheus, promtool          prometheus       integration (metrics)
#   chromium                      chromium         browser
#   qemu-system-x86_64            qemu-system-x86  vm
#   busybox (static, with insmod) busybox-static   vm
#   initdb, pg_ctl (a server)     postgresql       postgres
#   openssl (test certificates)   openssl          fault (TLS), queen certs init
#   strip (the packaged runtime)  binutils         package
#   lintian                       lintian          package
#   adduser (the .deb's postinst) adduser          package
#   nft (partitions in netns)     nftables         chaos
#   ip (network namespaces)       iproute2         chaos
set -uo pipefail

need=()
command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v qemu-system-x86_64 >/dev/null 2>&1 || need+=(qemu-system-x86)
{ [ -x /bin/busybox ] && /bin/busybox --list 2>/dev/null | grep -qx insmod; } || need+=(busybox-static)
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || need+=(postgresql)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v strip >/dev/null 2>&1 || need+=(binutils)
command -v lintian >/dev/null 2>&1 || need+=(lintian)
command -v adduser >/dev/null 2>&1 || need+=(adduser)
command -v nft >/dev/null 2>&1 || [ -x /usr/sbin/nft ] || need+=(nftables)
command -v ip >/dev/null 2>&1 || [ -x /usr/sbin/ip ] || need+=(iproute2)

# The user a root hive runs workers as by default (else nobody): a system user
# with no home and no shell, as docs/security.md has an operator create it.
if [ "$(id -u)" -eq 0 ] && ! id apiary-worker >/dev/null 2>&1; then
	useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin apiary-worker ||
		echo "setup: could not create the apiary-worker user; workers of a root hive run as nobody" >&2
fi

[ ${#need[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -ne 0 ]; then
	echo "setup: missing Debian packages: ${need[*]}" >&2
	echo "setup: install them with: sudo apt-get install --no-install-recommends ${need[*]}" >&2
	echo "setup: (npm test run as root installs them itself); the tiers that need them will fail until then" >&2
	exit 0
fi

echo "setup: installing ${need[*]} (apt-get)" >&2
apt-get update -qq || { echo "setup: apt-get update failed" >&2; exit 1; }
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null || {
	echo "setup: apt-get install ${need[*]} failed" >&2
	exit 1
}
