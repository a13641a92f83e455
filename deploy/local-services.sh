#!/usr/bin/env bash
# local-services.sh makes sure the services the hub and its tests need answer
# on this machine: PostgreSQL on 127.0.0.1:5432 and RabbitMQ on 127.0.0.1:5672
# (see shared/specs/local-services.md).
#
# Idempotent: a service that already answers is left alone. Bounded: every
# step has a timeout. It never stops or reconfigures a service it did not
# start; it installs the Debian packages (as root) only when they are missing.
#
# Environment:
#   SERVICES_TIMEOUT  seconds to wait for each service to answer (default 120)
#   APT_TIMEOUT       seconds allowed for apt-get update + install (default 900)
set -euo pipefail

export PATH="$PATH:/usr/sbin:/sbin"
export DEBIAN_FRONTEND=noninteractive

SERVICES_TIMEOUT="${SERVICES_TIMEOUT:-120}"
APT_TIMEOUT="${APT_TIMEOUT:-900}"
PG_HOST=127.0.0.1
PG_PORT=5432
MQ_HOST=127.0.0.1
MQ_PORT=5672

say() { printf 'local-services: %s\n' "$*"; }
die() { printf 'local-services: ERROR: %s\n' "$*" >&2; exit 1; }

pg_answers() { command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h "$PG_HOST" -p "$PG_PORT" -t 3; }
port_answers() { timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>/dev/null; }
mq_answers() { port_answers "$MQ_HOST" "$MQ_PORT"; }

# wait_for NAME CHECK: poll CHECK once a second for up to SERVICES_TIMEOUT.
wait_for() {
	local name="$1" check="$2" deadline=$((SECONDS + SERVICES_TIMEOUT))
	while ! "$check"; do
		if ((SECONDS >= deadline)); then
			die "$name does not answer after ${SERVICES_TIMEOUT}s"
		fi
		sleep 1
	done
}

installed_pkgs=""

# install PKG...: apt-get install, only as root, only when missing.
install() {
	if [[ $(id -u) -ne 0 ]]; then
		die "$* not installed and not root: run as root, or: sudo apt-get install -y $*"
	fi
	command -v apt-get >/dev/null 2>&1 || die "$* not installed and no apt-get on this machine"
	say "installing $* (apt-get, up to ${APT_TIMEOUT}s)"
	timeout "$APT_TIMEOUT" apt-get update -q </dev/null || die "apt-get update failed"
	timeout "$APT_TIMEOUT" apt-get install -y -q "$@" </dev/null || die "apt-get install $* failed"
	installed_pkgs="$installed_pkgs $*"
}

pg_version() { { ls /etc/postgresql 2>/dev/null || true; } | sort -V | tail -n 1; }

ensure_postgres() {
	if pg_answers; then
		say "PostgreSQL answers on $PG_HOST:$PG_PORT: nothing to do"
		return
	fi
	local fresh=""
	if [[ -z $(pg_version) ]] || ! command -v pg_ctlcluster >/dev/null 2>&1; then
		install postgresql
		fresh=yes
	fi
	local ver
	ver=$(pg_version)
	[[ -n $ver && -d /etc/postgresql/$ver/main ]] || die "no PostgreSQL cluster $ver/main under /etc/postgresql"
	if pg_answers; then # the package's postinst may have started it
		say "PostgreSQL $ver answers on $PG_HOST:$PG_PORT after install"
	else
		say "PostgreSQL does not answer on $PG_HOST:$PG_PORT: starting cluster $ver/main"
		timeout "$SERVICES_TIMEOUT" pg_ctlcluster --skip-systemctl-redirect "$ver" main start </dev/null ||
			die "pg_ctlcluster $ver main start failed (see /var/log/postgresql/)"
		wait_for PostgreSQL pg_answers
		say "PostgreSQL $ver started and answers on $PG_HOST:$PG_PORT"
	fi
	if [[ -n $fresh ]]; then
		# A cluster this script just installed gets the development setup of
		# the project's machines: trust authentication on loopback.
		local hba="/etc/postgresql/$ver/main/pg_hba.conf"
		if ! grep -q '^# zhianhub local-services' "$hba"; then
			say "freshly installed: trusting loopback connections in $hba"
			{
				echo '# zhianhub local-services: development machine, trust loopback'
				echo 'host all all 127.0.0.1/32 trust'
				echo 'host all all ::1/128 trust'
				cat "$hba"
			} >"$hba.new" && chown --reference="$hba" "$hba.new" && chmod --reference="$hba" "$hba.new" && mv "$hba.new" "$hba"
			timeout 60 pg_ctlcluster --skip-systemctl-redirect "$ver" main reload </dev/null || die "reload of $ver/main failed"
		fi
	fi
}

ensure_rabbitmq() {
	if mq_answers; then
		say "RabbitMQ answers on $MQ_HOST:$MQ_PORT: nothing to do"
		return
	fi
	if ! command -v rabbitmq-server >/dev/null 2>&1; then
		install rabbitmq-server
	fi
	if mq_answers; then # the package's postinst may have started it
		say "RabbitMQ answers on $MQ_HOST:$MQ_PORT after install"
		return
	fi
	if timeout 30 rabbitmqctl -q ping </dev/null >/dev/null 2>&1; then
		say "RabbitMQ node is running but not answering yet: waiting for it"
	else
		say "RabbitMQ does not answer on $MQ_HOST:$MQ_PORT: starting it (rabbitmq-server -detached)"
		rabbitmq-server -detached </dev/null || die "rabbitmq-server -detached failed"
	fi
	timeout "$SERVICES_TIMEOUT" rabbitmqctl await_startup </dev/null >/dev/null ||
		die "RabbitMQ did not start within ${SERVICES_TIMEOUT}s (see /var/log/rabbitmq/)"
	wait_for RabbitMQ mq_answers
	say "RabbitMQ started and answers on $MQ_HOST:$MQ_PORT"
}

ensure_postgres
ensure_rabbitmq
if [[ -n $installed_pkgs ]]; then
	say "installed:$installed_pkgs"
fi
say "all services ready"
