#!/usr/bin/env bash
# Throwaway PostgreSQL server on loopback for the test suite (locally and in CI).
#
#   scripts/postgres.sh [start]   install (Debian package) if needed, init, start; print the URL
#   scripts/postgres.sh stop      stop the server (the cluster directory is kept)
#   scripts/postgres.sh url       print the SQLAlchemy URL
#
# Environment: EMGDX_PG_DIR (cluster directory, default /tmp/emgdx-pg), EMGDX_PG_PORT
# (default 54329). The URL is the last line on stdout; every diagnostic goes to stderr.
#
# THIS IS A TEST SERVER ONLY: trust authentication (no passwords), fsync off. It listens on
# 127.0.0.1 and on a unix socket inside the cluster directory, nowhere else.
set -euo pipefail

PG_DIR="$(realpath -m -- "${EMGDX_PG_DIR:-/tmp/emgdx-pg}")"
PG_PORT="${EMGDX_PG_PORT:-54329}"
PG_HOST=127.0.0.1
DATA_DIR="$PG_DIR/data"
LOG_FILE="$PG_DIR/server.log"
SOCKET_DIR="$PG_DIR"
# Outside the cluster directory so that it can be taken before that directory exists.
LOCK_FILE="$PG_DIR.lock"
URL="postgresql+psycopg://emgdx@$PG_HOST:$PG_PORT/emgdx"

log() { printf 'postgres.sh: %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

[[ "$PG_PORT" =~ ^[0-9]+$ ]] || die "EMGDX_PG_PORT must be a port number, got '$PG_PORT'"

# Newest installed server version's bin directory (empty when none is installed).
find_bindir() {
    local ctl
    ctl="$(printf '%s\n' /usr/lib/postgresql/*/bin/pg_ctl | sort -V | tail -n 1)"
    if [[ -x "$ctl" ]]; then dirname -- "$ctl"; fi
}

install_server() {
    if [[ $EUID -ne 0 ]]; then
        die "PostgreSQL server binaries not found (/usr/lib/postgresql/*/bin/pg_ctl) and not" \
            "running as root: install them with 'sudo apt-get install postgresql' or set" \
            "EMGDX_TEST_POSTGRES_URL to an existing server"
    fi
    command -v apt-get >/dev/null || die "PostgreSQL not installed and apt-get not available"
    log "installing PostgreSQL (apt-get install postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    # 9>&-: a daemon started by the package scripts must not inherit the lock's descriptor.
    if ! apt-get install -y -q --no-install-recommends postgresql >&2 9>&-; then
        log "install failed; running apt-get update and trying again"
        apt-get update -q >&2 9>&-
        apt-get install -y -q --no-install-recommends postgresql >&2 9>&-
    fi
}

# Run a command as the postgres system user when root (initdb refuses to run as root),
# else as the current user.
as_pg() {
    if [[ $EUID -eq 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

is_running() { as_pg "$BIN/pg_ctl" status -D "$DATA_DIR" >/dev/null 2>&1; }

init_cluster() {
    mkdir -p -- "$PG_DIR"
    if [[ $EUID -eq 0 ]]; then
        id -u postgres >/dev/null 2>&1 ||
            die "system user 'postgres' missing (it comes with the Debian postgresql package)"
        chown postgres: -- "$PG_DIR"
    fi
    chmod 700 -- "$PG_DIR"
    as_pg test -w "$PG_DIR" || die "$PG_DIR is not writable by the server's user"
    if [[ -s "$DATA_DIR/PG_VERSION" ]]; then
        return
    fi
    log "initialising cluster in $DATA_DIR"
    # A half-made data directory from an interrupted initdb would make initdb refuse.
    rm -rf -- "$DATA_DIR"
    as_pg "$BIN/initdb" -D "$DATA_DIR" -U postgres -E UTF8 --locale=C --auth=trust \
        --no-sync >&2
    # Test server: trust authentication, loopback and the private unix socket only.
    as_pg tee "$DATA_DIR/pg_hba.conf" >/dev/null <<'EOF'
# TEST SERVER ONLY (scripts/postgres.sh): trust, no passwords; loopback + unix socket.
local   all          all                   trust
host    all          all   127.0.0.1/32    trust
local   replication  all                   trust
host    replication  all   127.0.0.1/32    trust
EOF
    # fsync and friends off: a test server's data may be lost on a crash, and that is fine.
    as_pg tee -a "$DATA_DIR/postgresql.conf" >/dev/null <<EOF

# --- scripts/postgres.sh: TEST SERVER ONLY ---
listen_addresses = '$PG_HOST'
unix_socket_directories = '$SOCKET_DIR'
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
}

ensure_role_and_db() {
    # Superuser: a test server; the tests create and drop their own databases.
    as_pg "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h "$SOCKET_DIR" -p "$PG_PORT" -U postgres \
        -d postgres <<'EOF'
SELECT 'CREATE ROLE emgdx LOGIN SUPERUSER'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'emgdx')\gexec
SELECT 'CREATE DATABASE emgdx OWNER emgdx'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'emgdx')\gexec
EOF
}

wait_ready() {
    for _ in $(seq 1 60); do
        if as_pg "$BIN/pg_isready" -q -h "$PG_HOST" -p "$PG_PORT"; then return 0; fi
        sleep 0.5
    done
    return 1
}

take_lock() {
    # pytest-xdist workers may call "start" at the same moment: one at a time.
    exec 9>>"$LOCK_FILE"
    flock -w 600 9 || die "timed out waiting for the lock $LOCK_FILE"
}

cmd_start() {
    take_lock
    BIN="$(find_bindir)"
    if [[ -z "$BIN" ]]; then
        install_server
        BIN="$(find_bindir)"
        [[ -n "$BIN" ]] || die "installed postgresql but found no /usr/lib/postgresql/*/bin/pg_ctl"
    fi
    # Paths of the caller (e.g. /root) may be unreadable to the postgres user.
    cd /
    if is_running; then
        log "already running ($DATA_DIR)"
        wait_ready || die "a server runs on $DATA_DIR but does not answer on $PG_HOST:$PG_PORT"
    else
        init_cluster
        log "starting PostgreSQL ($("$BIN/postgres" --version)) on $PG_HOST:$PG_PORT; log: $LOG_FILE"
        # 9>&-: the server must not inherit the lock's descriptor (it would hold the lock).
        if ! as_pg "$BIN/pg_ctl" start -D "$DATA_DIR" -l "$LOG_FILE" -w -t 60 \
            -o "-p $PG_PORT" >&2 9>&-; then
            tail -n 30 -- "$LOG_FILE" >&2 || true
            die "pg_ctl start failed (port $PG_PORT in use?)"
        fi
        wait_ready || die "server started but does not answer on $PG_HOST:$PG_PORT"
    fi
    ensure_role_and_db
    printf '%s\n' "$URL"
}

cmd_stop() {
    take_lock
    BIN="$(find_bindir)"
    cd /
    if [[ -n "$BIN" ]] && is_running; then
        as_pg "$BIN/pg_ctl" stop -D "$DATA_DIR" -m fast -w >&2
    else
        log "not running ($DATA_DIR)"
    fi
}

case "${1:-start}" in
start) cmd_start ;;
stop) cmd_stop ;;
url) printf '%s\n' "$URL" ;;
*)
    echo "usage: $0 [start|stop|url]" >&2
    exit 2
    ;;
esac
