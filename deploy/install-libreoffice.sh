#!/usr/bin/env bash
# install-libreoffice.sh makes sure `soffice` (LibreOffice Calc, headless) is
# on this machine: the export tests open every .xlsx the hub writes with it
# and convert it to CSV. Installs the Debian package libreoffice-calc-nogui
# (as root, with apt-get) only when soffice is missing; does nothing
# otherwise. Concurrent runs wait for each other (flock).
#
# Environment:
#   APT_TIMEOUT  seconds allowed for apt-get update + install (default 900)
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive
APT_TIMEOUT="${APT_TIMEOUT:-900}"
PKG=libreoffice-calc-nogui

say() { printf 'install-libreoffice: %s\n' "$*"; }
die() { printf 'install-libreoffice: ERROR: %s\n' "$*" >&2; exit 1; }

if command -v soffice >/dev/null 2>&1; then
	exit 0
fi
if [[ $(id -u) -ne 0 ]]; then
	die "soffice not found and not root: run as root, or: sudo apt-get install -y $PKG"
fi
command -v apt-get >/dev/null 2>&1 || die "soffice not found and no apt-get on this machine"

exec 9>/tmp/zhianhub-install-libreoffice.lock
flock -w "$APT_TIMEOUT" 9 || die "another install did not finish within ${APT_TIMEOUT}s"
if command -v soffice >/dev/null 2>&1; then
	exit 0 # installed by the run we waited for
fi
say "installing $PKG (apt-get, up to ${APT_TIMEOUT}s)"
timeout "$APT_TIMEOUT" apt-get update -q </dev/null || die "apt-get update failed"
timeout "$APT_TIMEOUT" apt-get install -y -q --no-install-recommends "$PKG" </dev/null || die "apt-get install $PKG failed"
command -v soffice >/dev/null 2>&1 || die "$PKG installed but soffice is not on PATH"
say "installed: $(soffice --version 2>/dev/null | head -n 1)"
