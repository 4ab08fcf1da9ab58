#!/usr/bin/env bash
# stack/stack.sh: the project's three servers, natively (no Docker engine needed).
#   PostgreSQL        Debian's package, own cluster in .stack/data/postgres
#   Apache Kafka      KRaft broker+controller from Maven Central jars
#   Apicurio Registry Confluent-compatible schema registry, storage in that PostgreSQL
#
# Usage: stack/stack.sh COMMAND
#   up                start whatever is not running, wait until all three answer, print the env
#   down [--purge]    stop all three (SIGTERM, then SIGKILL after a timeout); --purge deletes .stack/data
#   purge             the same as down --purge
#   status            one line per server: running or not, pid, port, answering or not
#   psql [ARGS]       psql as the superuser over the stack's own unix socket
#   install-postgres  apt-get install Debian's PostgreSQL if its server binaries are missing
# STACK_TOPOLOGY=cluster (default single): 3 Kafka nodes, 2 PostgreSQL under Patroni, 3 etcd,
# with other commands and ports: stack/cluster.sh.
# One server at a time (SERVER: postgres, kafka or registry), for fault-injection tests:
#   start SERVER      start it unless it runs; return once it answers. The registry needs PostgreSQL.
#   stop SERVER [--signal TERM|KILL] [--mode smart|fast|immediate]
#                     stop it; return once its process is gone (a quiet no-op if it is not running).
#                     TERM (default): graceful, SIGKILL after STACK_STOP_TIMEOUT s; KILL: SIGKILL now.
#                     postgres: TERM = pg_ctl stop -m fast; KILL = SIGKILL to the postmaster and all
#                     its children (a crash: recovery on the next start); --mode = pg_ctl stop -m MODE.
#   restart SERVER [--signal TERM|KILL] [--mode smart|fast|immediate]
#                     stop as above, start, return once it answers again. postgres without
#                     --signal KILL: pg_ctl restart -m MODE (default fast; immediate = crash-like).
#
# Kafka has a second listener, PROXIED, for network-fault tests: bound on 127.0.0.1:9095
# (STACK_KAFKA_PROXIED_BIND_PORT), advertised as 127.0.0.1:9094 (STACK_KAFKA_PROXIED_PORT), where
# nothing listens unless a test runs a TCP proxy there forwarding to 9095. Clients bootstrapping at
# 127.0.0.1:9094 then send all their traffic through that proxy, which the test can cut.
#
# Versions, ports (STACK_PG_PORT, STACK_KAFKA_PORT, STACK_KAFKA_CONTROLLER_PORT,
# STACK_KAFKA_PROXIED_PORT, STACK_KAFKA_PROXIED_BIND_PORT, STACK_REGISTRY_PORT) and paths:
# stack/common.sh. State lives in $STACK_HOME, default .stack/ (git-ignored): cache/ downloads,
# data/ server data, log/ server logs, run/ pid files and generated config. Stacks with different
# STACK_HOMEs (and ports) run side by side and never touch each other's processes.
#
# STACK_SECURITY=on (best in a STACK_HOME of its own): Kafka on SASL_SSL with SCRAM and ACLs, the
# registry behind nginx with TLS and basic auth (STACK_REGISTRY_PROXY_PORT), PostgreSQL with TLS and
# passwords only; `up` prints the service's settings. Details: stack/secure.sh.
set -euo pipefail
umask 022

# shellcheck source=common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"

T0=$EPOCHREALTIME
PG_TIMEOUT=${STACK_PG_TIMEOUT:-60}
KAFKA_TIMEOUT=${STACK_KAFKA_TIMEOUT:-120}
REGISTRY_TIMEOUT=${STACK_REGISTRY_TIMEOUT:-180}
STOP_TIMEOUT=${STACK_STOP_TIMEOUT:-30}

KAFKA_PROPS=$RUN_DIR/kafka.properties
KAFKA_LOG=$LOG_DIR/kafka/server.log
KAFKA_OUT=$LOG_DIR/kafka.out
REGISTRY_LOG=$LOG_DIR/registry.log
REGISTRY_URL=http://127.0.0.1:$STACK_REGISTRY_PORT/apis/ccompat/v7
# Set otherwise by stack/secure.sh (STACK_SECURITY=on): extra broker properties and storage
# format arguments, the registry's database password and JDBC URL parameters.
kafka_extra_properties() { :; }
KAFKA_FORMAT_ARGS=()
APICURIO_DB_PASSWORD=apicurio
APICURIO_JDBC_QUERY=""

# ---------------------------------------------------------------- helpers ---

as_root() { [[ $EUID -eq 0 ]]; }

# PostgreSQL refuses to run as root: as root, run its server commands as the `postgres` user.
as_pg() {
    if as_root; then runuser -u postgres -- "$@"; else "$@"; fi
}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

# Fail clearly when a port we need is held by a program that is not ours.
port_free_or_die() { # PORT VARIABLE
    port_open "$1" || return 0
    local who=""
    command -v ss >/dev/null && who=$(ss -Hltnp "sport = :$1" 2>/dev/null | grep -o 'users:.*' | head -1)
    die "port $1 is already in use by another program${who:+ ($who)}; stop it or choose another port with $2=..."
}

# The command line of process $1, arguments joined by spaces (bash builtins only: no fork).
cmdline() {
    local -a args=()
    { mapfile -d '' args <"/proc/$1/cmdline"; } 2>/dev/null || true
    printf '%s' "${args[*]}"
}

# What identifies each server's process in /proc/<pid>/cmdline (guards against reused pids): a
# fixed token, then a path under this STACK_HOME as a whole argument. So another stack (another
# STACK_HOME, even one whose path starts or ends like this one's) never matches.
signature() {
    case $1 in
        postgres) printf '%s' "postgres -D $PG_DATA" ;;
        kafka) printf '%s' "kafka.Kafka $KAFKA_PROPS" ;;
        registry) printf '%s' "-jar $APICURIO_JAR" ;;
    esac
}

# Is process $1 server $2 of this stack? (The path must end an argument; the token before it
# anchors its start.)
has_signature() { # PID NAME
    local sig
    sig=$(signature "$2")
    [[ "$(cmdline "$1") " == *"$sig "* ]]
}

# Every server process of this stack, found in /proc: the Kafka broker and the registry by
# their command lines, PostgreSQL's postmaster and children by their working directory.
our_pids() {
    local dir kafka registry line
    local -a args
    kafka="$(signature kafka) " registry="$(signature registry) "
    for dir in /proc/[0-9]*; do
        args=()
        { mapfile -d '' args <"$dir/cmdline"; } 2>/dev/null || continue
        line="${args[*]} "
        case $line in
            *"$kafka"* | *"$registry"*) echo "${dir#/proc/}" ;;
            *postgres*) if [[ $dir/cwd -ef $PG_DATA ]]; then echo "${dir#/proc/}"; fi ;;
        esac
    done
    return 0
}

# The processes of this stack's PostgreSQL cluster (postmaster and children): by working directory.
pg_pids() {
    local dir
    local -a args
    for dir in /proc/[0-9]*; do
        args=()
        { mapfile -d '' args <"$dir/cmdline"; } 2>/dev/null || continue
        [[ ${args[*]} == *postgres* && $dir/cwd -ef $PG_DATA ]] && echo "${dir#/proc/}"
    done
    return 0
}

# Print the pid of server $1 if it runs. A stale pid file (process gone, or the pid now
# belongs to another program) is removed; a lost one is recovered from /proc.
running_pid() {
    local name=$1 file=$RUN_DIR/$1.pid pid
    if [[ -f $file ]]; then
        pid=$(<"$file")
        if [[ $pid =~ ^[0-9]+$ ]] && has_signature "$pid" "$name"; then
            echo "$pid"
            return 0
        fi
        rm -f "$file"
    fi
    for pid in $(our_pids); do
        # postgres children share the data dir in their cwd but not the -D flag
        if has_signature "$pid" "$name"; then
            mkdir -p "$RUN_DIR" && echo "$pid" >"$file"
            echo "$pid"
            return 0
        fi
    done
    return 1
}

# Is process $1 running? A zombie (exited, not yet reaped by its parent) is not.
alive() {
    local stat
    { read -r stat <"/proc/$1/stat"; } 2>/dev/null || return 1
    stat=${stat##*) }
    [[ ${stat:0:1} != Z ]]
}

# SIGTERM, wait up to $2 seconds, then SIGKILL.
stop_pid() { # PID TIMEOUT NAME
    local pid=$1 timeout=$2 name=$3 i
    alive "$pid" || return 0
    kill -TERM "$pid" 2>/dev/null || true
    for ((i = 0; i < timeout * 10; i++)); do
        alive "$pid" || return 0
        sleep 0.1
    done
    say "$name (pid $pid) did not stop within ${timeout}s: SIGKILL"
    kill_pids "$name" "$pid"
}

# SIGKILL, then wait until every one of the processes is gone.
kill_pids() { # NAME PID...
    local name=$1 pid i
    shift
    kill -KILL "$@" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        for pid in "$@"; do alive "$pid" && break; done
        alive "$pid" || return 0
        sleep 0.1
    done
    die "$name: process $* still there 10 s after SIGKILL"
}

# Seconds since the command started, to a tenth.
elapsed() { awk -v a="$T0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }'; }

log_tail() { # FILE...
    local f
    for f in "$@"; do
        [[ -s $f ]] || continue
        say "----- last lines of $f -----"
        tail -n 25 "$f" >&2
    done
}

# -------------------------------------------------------------- PostgreSQL ---

pg_bin_dir() {
    local d
    d=$(printf "%s\n" /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
    if [[ -n $d && -x $d/pg_ctl && -x $d/initdb ]]; then echo "$d"; return 0; fi
    d=$(command -v pg_ctl 2>/dev/null) && [[ -x $(dirname "$d")/initdb ]] && { dirname "$d"; return 0; }
    return 1
}

install_postgres() {
    pg_bin_dir >/dev/null && return 0
    as_root || die "PostgreSQL's server is not installed; run: sudo apt-get install -y postgresql"
    say "installing Debian's PostgreSQL (apt-get) ..."
    # No Debian 'main' cluster: it would start on port 5432, where the stack runs its own.
    mkdir -p /etc/postgresql-common
    grep -qs '^ *create_main_cluster' /etc/postgresql-common/createcluster.conf \
        || echo 'create_main_cluster = false' >>/etc/postgresql-common/createcluster.conf
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q >&2
    apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold postgresql >&2
    pg_bin_dir >/dev/null || die "apt-get installed postgresql but no pg_ctl/initdb under /usr/lib/postgresql/*/bin"
}

# Where the cluster lives. Normally under .stack/; as root, the `postgres` user must be able
# to reach it, and unix socket paths are limited to 107 bytes: if either fails (say a clone
# under /root), data, socket and log move to /var/tmp/allocation-stack-<hash>, and
# .stack/data/postgres becomes a symlink to it.
pg_paths() {
    PG_DATA=$DATA_DIR/postgres
    PG_SOCK=$RUN_DIR/pg
    PG_LOG=$LOG_DIR/postgres.log
    PG_ALT=/var/tmp/allocation-stack-$(printf '%s' "$STACK_HOME" | md5sum | cut -c1-10)
    local use_alt=false
    if [[ -L $PG_DATA ]]; then
        use_alt=true
    elif ((${#PG_SOCK} + 20 > 107)); then
        use_alt=true
    elif as_root && id postgres >/dev/null 2>&1 && [[ -d $STACK_HOME ]] \
        && ! runuser -u postgres -- test -x "$STACK_HOME" 2>/dev/null; then
        use_alt=true
    fi
    if $use_alt; then
        PG_DATA=$PG_ALT/data PG_SOCK=$PG_ALT/run PG_LOG=$PG_ALT/postgres.log
    fi
}

pg_ready() { "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$STACK_PG_PORT" -d allocation -t 2 2>/dev/null; }

pg_select1() {
    PGPASSWORD=allocation PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -q -At \
        "host=127.0.0.1 port=$STACK_PG_PORT user=allocation dbname=allocation" -c 'select 1' 2>/dev/null \
        | grep -qx 1
}

pg_superuser_psql() {
    "$PG_BIN/psql" -X -h "$PG_SOCK" -p "$STACK_PG_PORT" -U postgres "$@"
}

pg_init_cluster() {
    [[ -f $PG_DATA/PG_VERSION ]] && return 0
    say "initdb: new PostgreSQL cluster in $PG_DATA"
    rm -rf "$PG_DATA"
    mkdir -p "$PG_DATA"
    if [[ $PG_DATA == "$PG_ALT"/* ]]; then
        as_root && chown postgres:postgres "$PG_ALT"
        rm -rf "$DATA_DIR/postgres" && ln -s "$PG_DATA" "$DATA_DIR/postgres"
        ln -sfn "$PG_LOG" "$LOG_DIR/postgres.log"
    fi
    as_root && chown postgres:postgres "$PG_DATA"
    chmod 700 "$PG_DATA"
    as_pg "$PG_BIN/initdb" -D "$PG_DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C >"$PG_LOG.initdb" 2>&1 \
        || { log_tail "$PG_LOG.initdb"; die "initdb failed (full output: $PG_LOG.initdb)"; }
    as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<'EOF'
# written by stack/stack.sh: the superuser over the stack's own unix socket, passwords elsewhere
local   all   postgres                  trust
local   all   all                       scram-sha-256
host    all   all       127.0.0.1/32    scram-sha-256
host    all   all       ::1/128         scram-sha-256
EOF
    echo "include_if_exists = 'stack.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
}

pg_start() {
    pg_init_cluster
    mkdir -p "$PG_SOCK" "$(dirname "$PG_LOG")"
    touch "$PG_LOG"
    as_root && chown postgres:postgres "$PG_SOCK" "$PG_LOG"
    # Only the server's user (and root) reach the superuser's trusted socket.
    chmod 700 "$PG_SOCK"
    # regenerated on every start, so a changed STACK_PG_PORT takes effect
    as_pg tee "$PG_DATA/stack.conf" >/dev/null <<EOF
# written by stack/stack.sh on every start
listen_addresses = '127.0.0.1'
port = $STACK_PG_PORT
unix_socket_directories = '$PG_SOCK'
unix_socket_permissions = 0700
max_connections = 300
password_encryption = 'scram-sha-256'
log_line_prefix = '%m [%p] %q%u@%d '
EOF
    # Stale lock files of a killed server block the start while their pid is a zombie (not yet
    # reaped) or reused by another program: remove them unless that pid is a live postgres.
    local lock old_pid
    for lock in "$PG_DATA/postmaster.pid" "$PG_SOCK/.s.PGSQL.$STACK_PG_PORT.lock"; do
        if old_pid=$(head -n 1 "$lock" 2>/dev/null) \
            && ! { alive "$old_pid" && has_signature "$old_pid" postgres; }; then
            rm -f "$lock"
        fi
    done
    say "starting PostgreSQL on 127.0.0.1:$STACK_PG_PORT ..."
    # A postmaster killed with SIGKILL leaves children for a moment: retry once.
    local try out
    for try in 1 2; do
        if out=$(as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -w -t "$PG_TIMEOUT" start 2>&1 9>&-); then
            break
        fi
        if [[ $try == 2 ]]; then
            say "$out"
            log_tail "$PG_LOG"
            die "PostgreSQL did not start; read $PG_LOG"
        fi
        sleep 3
    done
    head -n 1 "$PG_DATA/postmaster.pid" >"$RUN_DIR/postgres.pid"
}

pg_wait() {
    local i
    for ((i = 0; i < PG_TIMEOUT * 5; i++)); do
        pg_ready && break
        sleep 0.2
    done
    pg_ready || { log_tail "$PG_LOG"; die "PostgreSQL does not accept connections on 127.0.0.1:$STACK_PG_PORT; read $PG_LOG"; }
}

pg_wait_and_setup() {
    pg_wait
    pg_superuser_psql -q -d postgres -f "$STACK_SRC/postgres/init.sql" >/dev/null \
        || die "creating the roles and databases failed (stack/postgres/init.sql)"
    pg_select1 || die "PostgreSQL is up but 'select 1' as allocation@127.0.0.1:$STACK_PG_PORT/allocation fails; read $PG_LOG"
}

# Stop the cluster whose postmaster is $1. KILL: SIGKILL to the postmaster, then to whatever of its
# children is left (a crash; the next start recovers). Otherwise pg_ctl stop -m MODE (default fast:
# clients are disconnected; plain SIGTERM would be 'smart' and wait for every client to leave),
# escalating to SIGKILL if it does not finish in STOP_TIMEOUT seconds.
pg_stop() { # PID SIGNAL MODE
    local pid=$1 signal=$2 mode=${3:-fast}
    local -a left
    if [[ $signal == KILL ]]; then
        say "killing PostgreSQL (postmaster pid $pid and its children: SIGKILL)"
        kill -KILL "$pid" 2>/dev/null || true
    else
        say "stopping PostgreSQL (pid $pid, pg_ctl stop -m $mode)"
        if [[ -n ${PG_BIN:-} ]]; then
            as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -m "$mode" -w -t "$STOP_TIMEOUT" stop >/dev/null 2>&1 9>&- || true
        fi
        stop_pid "$pid" 5 PostgreSQL
    fi
    # children of a killed postmaster (or of one that ignored pg_ctl) would block the next start
    mapfile -t left < <(pg_pids)
    ((${#left[@]} == 0)) || kill_pids "PostgreSQL" "${left[@]}"
    rm -f "$RUN_DIR/postgres.pid"
}

# ------------------------------------------------------------------- Kafka ---

kafka_java() { # MAIN_CLASS ARGS... (for one-shot tools during setup)
    java -Xmx256m -Dlog4j2.configurationFile="$STACK_SRC/kafka/log4j2-tools.xml" -cp "$KAFKA_LIBS/*" "$@"
}

kafka_answers() { python3 "$STACK_SRC/kafka_probe.py" "127.0.0.1:$STACK_KAFKA_PORT" "${1:-2}" >/dev/null 2>&1; }

kafka_start() {
    ensure_kafka_jars
    local data=$DATA_DIR/kafka
    mkdir -p "$data" "$LOG_DIR/kafka"
    {
        sed -e "s|@PORT@|$STACK_KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$STACK_KAFKA_CONTROLLER_PORT|g" \
            -e "s|@PROXIED_PORT@|$STACK_KAFKA_PROXIED_PORT|g" -e "s|@PROXIED_BIND_PORT@|$STACK_KAFKA_PROXIED_BIND_PORT|g" \
            -e "s|@DATA_DIR@|$data|g" "$STACK_SRC/kafka/server.properties.in"
        kafka_extra_properties
    } >"$KAFKA_PROPS"
    if [[ ! -f $data/meta.properties ]]; then
        local cluster_id
        cluster_id=$(kafka_java kafka.tools.StorageTool random-uuid) || die "could not run Kafka's StorageTool (java -cp $KAFKA_LIBS/*)"
        say "formatting Kafka storage in $data (cluster id $cluster_id)"
        kafka_java kafka.tools.StorageTool format -t "$cluster_id" -c "$KAFKA_PROPS" "${KAFKA_FORMAT_ARGS[@]}" >"$LOG_DIR/kafka-format.log" 2>&1 \
            || { log_tail "$LOG_DIR/kafka-format.log"; die "formatting Kafka storage failed; read $LOG_DIR/kafka-format.log"; }
    fi
    say "starting Kafka $KAFKA_VERSION on 127.0.0.1:$STACK_KAFKA_PORT (PROXIED: bound $STACK_KAFKA_PROXIED_BIND_PORT, advertised $STACK_KAFKA_PROXIED_PORT) ..."
    setsid nohup java -Xms256m -Xmx1g -XX:+UseG1GC -XX:MaxGCPauseMillis=20 -Djava.awt.headless=true \
        -Dlog4j2.configurationFile="$STACK_SRC/kafka/log4j2-broker.xml" -Dkafka.logs.dir="$LOG_DIR/kafka" \
        -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS" >"$KAFKA_OUT" 2>&1 </dev/null 9>&- &
    echo $! >"$RUN_DIR/kafka.pid"
}

# ---------------------------------------------------------------- Apicurio ---

registry_answers() { curl -fsS -m 2 -o /dev/null "$REGISTRY_URL/subjects" 2>/dev/null; }

registry_start() {
    ensure_apicurio
    say "starting Apicurio Registry $APICURIO_VERSION on 127.0.0.1:$STACK_REGISTRY_PORT ..."
    (
        cd "$RUN_DIR"
        export APICURIO_STORAGE_KIND=sql APICURIO_STORAGE_SQL_KIND=postgresql \
            APICURIO_DATASOURCE_URL="jdbc:postgresql://127.0.0.1:$STACK_PG_PORT/apicurio$APICURIO_JDBC_QUERY" \
            APICURIO_DATASOURCE_USERNAME=apicurio APICURIO_DATASOURCE_PASSWORD=$APICURIO_DB_PASSWORD \
            APICURIO_DATASOURCE_JDBC_INITIAL_SIZE=2 APICURIO_DATASOURCE_JDBC_MIN_SIZE=2 \
            APICURIO_DATASOURCE_JDBC_MAX_SIZE=20 \
            QUARKUS_HTTP_PORT="$STACK_REGISTRY_PORT" QUARKUS_HTTP_HOST=127.0.0.1 \
            QUARKUS_HTTP_ACCESS_LOG_ENABLED=false
        setsid nohup java -Xms128m -Xmx512m -jar "$APICURIO_JAR" >"$REGISTRY_LOG" 2>&1 </dev/null 9>&- &
        echo $! >"$RUN_DIR/registry.pid"
    )
}

# Wait until CHECK succeeds, failing early if the process dies.
wait_for() { # NAME PID TIMEOUT CHECK LOGS...
    local name=$1 pid=$2 timeout=$3 check=$4 deadline=$((SECONDS + $3))
    shift 4
    $check && return 0
    until $check; do
        if ! alive "$pid"; then
            log_tail "$@"
            die "$name exited during startup; read $*"
        fi
        if ((SECONDS >= deadline)); then
            log_tail "$@"
            die "$name did not answer within ${timeout}s (pid $pid still runs); read $*"
        fi
        sleep 0.3
    done
    say "$name answers ($(elapsed) s)"
}

# ---------------------------------------------------------------- commands ---

print_env() {
    local env
    env=$(
        cat <<EOF
export KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$STACK_KAFKA_PORT
export SCHEMA_REGISTRY_URL=$REGISTRY_URL
export DATABASE_URL=postgresql://allocation:allocation@127.0.0.1:$STACK_PG_PORT/allocation
export MIGRATION_DATABASE_URL=postgresql://allocation_owner:allocation_owner@127.0.0.1:$STACK_PG_PORT/allocation
EOF
    )
    printf '%s\n' "$env" >"$STACK_HOME/env"
    printf '%s\n' "$env"
}

# Take the stack's lock (fd 9): one up/down/start/stop/restart at a time. Servers never inherit it.
take_lock() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/lock"
    flock -w 600 9 || die "another stack.sh command (up/down/start/stop/restart) holds $RUN_DIR/lock"
}

# What starting servers needs: directories, the lock, java, curl, PostgreSQL's binaries and paths.
prepare_start() {
    mkdir -p "$CACHE_DIR" "$DATA_DIR" "$LOG_DIR" "$RUN_DIR"
    take_lock
    command -v java >/dev/null || die "java not found: the stack needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless)"
    command -v curl >/dev/null || die "curl not found (apt-get install curl)"
    install_postgres
    PG_BIN=$(pg_bin_dir)
    pg_paths
}

# Start server $1 unless it runs, without waiting for Kafka or the registry to answer
# (PostgreSQL is waited for: the others need it). Sets PID to its pid.
launch() { # NAME
    case $1 in
        postgres)
            if ! PID=$(running_pid postgres); then
                port_free_or_die "$STACK_PG_PORT" STACK_PG_PORT
                pg_start
                PID=$(<"$RUN_DIR/postgres.pid")
            fi
            pg_wait_and_setup
            ;;
        kafka)
            if ! PID=$(running_pid kafka); then
                port_free_or_die "$STACK_KAFKA_PORT" STACK_KAFKA_PORT
                port_free_or_die "$STACK_KAFKA_CONTROLLER_PORT" STACK_KAFKA_CONTROLLER_PORT
                port_free_or_die "$STACK_KAFKA_PROXIED_BIND_PORT" STACK_KAFKA_PROXIED_BIND_PORT
                kafka_start
                PID=$(<"$RUN_DIR/kafka.pid")
            fi
            ;;
        registry)
            # checked even if the registry runs: without its database it would never answer
            if ! { running_pid postgres >/dev/null && pg_ready; }; then
                die "the registry keeps its data in PostgreSQL, which is not running on 127.0.0.1:$STACK_PG_PORT: start it first (stack/stack.sh start postgres)"
            fi
            if ! PID=$(running_pid registry); then
                port_free_or_die "$STACK_REGISTRY_PORT" STACK_REGISTRY_PORT
                registry_start
                PID=$(<"$RUN_DIR/registry.pid")
            fi
            ;;
    esac
}

wait_answers() { # NAME PID
    case $1 in
        postgres) say "PostgreSQL accepts connections ($(elapsed) s)" ;;
        kafka) wait_for Kafka "$2" "$KAFKA_TIMEOUT" kafka_answers "$KAFKA_LOG" "$KAFKA_OUT" ;;
        registry) wait_for "Apicurio Registry" "$2" "$REGISTRY_TIMEOUT" registry_answers "$REGISTRY_LOG" ;;
    esac
}

cmd_up() {
    local PID pg_pid kafka_pid reg_pid
    prepare_start
    # 1. PostgreSQL; 2. Kafka and 3. Apicurio start side by side: the registry needs only PostgreSQL.
    launch postgres && pg_pid=$PID
    launch kafka && kafka_pid=$PID
    launch registry && reg_pid=$PID
    wait_answers kafka "$kafka_pid"
    wait_answers registry "$reg_pid"
    say "stack up in $(elapsed) s: postgres pid $pg_pid, kafka pid $kafka_pid, registry pid $reg_pid"
    print_env
}

# Stop server $1 of this stack, if it runs; return once its process is gone.
stop_server() { # NAME SIGNAL MODE
    local name=$1 signal=$2 mode=$3 pid label
    case $name in
        postgres) label=PostgreSQL ;;
        kafka) label=Kafka ;;
        registry) label="Apicurio Registry" ;;
    esac
    if ! pid=$(running_pid "$name"); then
        # a killed postmaster may have left children behind
        if [[ $name == postgres ]]; then
            local -a left
            mapfile -t left < <(pg_pids)
            ((${#left[@]} == 0)) || kill_pids PostgreSQL "${left[@]}"
        fi
        rm -f "$RUN_DIR/$name.pid"
        return 0
    fi
    if [[ $name == postgres ]]; then
        pg_stop "$pid" "$signal" "$mode"
    elif [[ $signal == KILL ]]; then
        say "killing $label (pid $pid: SIGKILL)"
        kill_pids "$label" "$pid"
    else
        say "stopping $label (pid $pid)"
        stop_pid "$pid" "$STOP_TIMEOUT" "$label"
    fi
    rm -f "$RUN_DIR/$name.pid"
    say "$label stopped ($(elapsed) s)"
}

cmd_down() {
    local purge=false pid
    [[ ${1:-} == --purge ]] && purge=true
    [[ -d $STACK_HOME ]] || return 0
    take_lock
    pg_paths
    PG_BIN=$(pg_bin_dir) || true
    stop_server registry TERM ""
    stop_server kafka TERM ""
    stop_server postgres TERM fast
    # Leftovers (a lost pid file, postgres children of a killed postmaster): stop them by pid.
    local left
    for pid in $(our_pids); do
        say "stopping leftover process $pid: $(cmdline "$pid" | cut -c1-100)"
        stop_pid "$pid" 10 "process $pid"
    done
    left=$(our_pids)
    rm -f "$RUN_DIR"/{postgres,kafka,registry}.pid
    [[ -z $left ]] || die "processes of the stack still run: $left"
    if $purge; then
        say "deleting $DATA_DIR"
        rm -rf "$DATA_DIR" "$PG_ALT"
    fi
}

# Parse SERVER [--signal TERM|KILL] [--mode smart|fast|immediate] into NAME, SIGNAL, MODE.
parse_server_args() { # COMMAND ARGS...
    local cmd=$1 usage
    shift
    usage="usage: stack/stack.sh $cmd postgres|kafka|registry"
    [[ $cmd == start ]] || usage+=" [--signal TERM|KILL] [--mode smart|fast|immediate]"
    NAME=${1:-} SIGNAL=TERM MODE=""
    case $NAME in
        postgres | kafka | registry) shift ;;
        *) die "$usage" ;;
    esac
    if [[ $cmd == start && $# -gt 0 ]]; then die "$usage"; fi
    while (($#)); do
        case $1 in
            --signal | --mode)
                (($# >= 2)) || die "$cmd: $1 needs a value"
                if [[ $1 == --signal ]]; then SIGNAL=$2; else MODE=$2; fi
                shift 2
                ;;
            --signal=*) SIGNAL=${1#*=} && shift ;;
            --mode=*) MODE=${1#*=} && shift ;;
            *) die "$cmd: unknown argument '$1' (expected --signal TERM|KILL or, for postgres, --mode smart|fast|immediate)" ;;
        esac
    done
    SIGNAL=${SIGNAL#SIG}
    case $SIGNAL in TERM | KILL) ;; *) die "$cmd: --signal takes TERM or KILL, not '$SIGNAL'" ;; esac
    case $MODE in "" | smart | fast | immediate) ;; *) die "$cmd: --mode takes smart, fast or immediate, not '$MODE'" ;; esac
    if [[ -n $MODE ]]; then
        [[ $NAME == postgres ]] || die "$cmd: --mode applies to postgres only"
        [[ $SIGNAL == TERM ]] || die "$cmd: use either --signal KILL or --mode, not both"
    fi
}

cmd_start() {
    local NAME SIGNAL MODE PID
    parse_server_args start "$@"
    prepare_start
    launch "$NAME"
    wait_answers "$NAME" "$PID"
}

cmd_stop() {
    local NAME SIGNAL MODE
    parse_server_args stop "$@"
    [[ -d $STACK_HOME ]] || return 0
    take_lock
    pg_paths
    PG_BIN=$(pg_bin_dir) || true
    stop_server "$NAME" "$SIGNAL" "$MODE"
}

cmd_restart() {
    local NAME SIGNAL MODE PID pid
    parse_server_args restart "$@"
    prepare_start
    if [[ $NAME == postgres && $SIGNAL == TERM ]] && pid=$(running_pid postgres); then
        MODE=${MODE:-fast}
        say "restarting PostgreSQL (pid $pid, pg_ctl restart -m $MODE) ..."
        local out
        out=$(as_pg "$PG_BIN/pg_ctl" -D "$PG_DATA" -l "$PG_LOG" -m "$MODE" -w -t "$PG_TIMEOUT" restart 2>&1 9>&-) \
            || { say "$out"; log_tail "$PG_LOG"; die "pg_ctl restart failed; read $PG_LOG"; }
        head -n 1 "$PG_DATA/postmaster.pid" >"$RUN_DIR/postgres.pid"
        pg_wait
        pg_select1 || die "PostgreSQL restarted but 'select 1' as allocation@127.0.0.1:$STACK_PG_PORT/allocation fails; read $PG_LOG"
        say "PostgreSQL accepts connections again, pid $(<"$RUN_DIR/postgres.pid") ($(elapsed) s)"
        return 0
    fi
    stop_server "$NAME" "$SIGNAL" "$MODE"
    launch "$NAME"
    wait_answers "$NAME" "$PID"
}

cmd_status() {
    pg_paths
    PG_BIN=$(pg_bin_dir) || PG_BIN=/nonexistent
    local name label port pid answers check
    for name in postgres kafka registry; do
        case $name in
            postgres) label=postgres port=$STACK_PG_PORT check=pg_select1 ;;
            kafka) label=kafka port=$STACK_KAFKA_PORT check=kafka_answers ;;
            registry) label=registry port=$STACK_REGISTRY_PORT check=registry_answers ;;
        esac
        if pid=$(running_pid "$name"); then
            if $check; then answers=answers; else answers="NOT answering"; fi
            printf '%-9s running  pid %-8s port %-6s %s\n' "$label" "$pid" "$port" "$answers"
        elif port_open "$port"; then
            printf '%-9s stopped  %-12s port %-6s in use by another program\n' "$label" "" "$port"
        else
            printf '%-9s stopped  %-12s port %-6s\n' "$label" "" "$port"
        fi
    done
}

# STACK_SECURITY=on: TLS, SASL, ACLs and passwords everywhere (stack/secure.sh redefines some of the
# above). A STACK_HOME once secured stays so, lest a plain `up` open its data to anyone.
if [[ ${STACK_SECURITY:-off} == on || -f $STACK_HOME/secure/.complete ]]; then
    # shellcheck source=secure.sh
    source "$STACK_SRC/secure.sh"
fi

# STACK_TOPOLOGY=cluster: 3 Kafka nodes, PostgreSQL under Patroni and etcd (stack/cluster.sh),
# which uses the helpers above.
case ${STACK_TOPOLOGY:-single} in
    single) ;;
    cluster)
        # shellcheck source=cluster.sh
        source "$STACK_SRC/cluster.sh"
        cluster_main "$@"
        exit
        ;;
    *) die "STACK_TOPOLOGY must be single or cluster, not '$STACK_TOPOLOGY'" ;;
esac

cmd_psql() {
    PG_BIN=$(pg_bin_dir) || die "PostgreSQL is not installed (stack/stack.sh install-postgres)"
    pg_paths
    running_pid postgres >/dev/null || die "the stack's PostgreSQL is not running (make stack-up)"
    exec "$PG_BIN/psql" -X -h "$PG_SOCK" -p "$STACK_PG_PORT" -U postgres "$@"
}

case ${1:-} in
    up) cmd_up ;;
    down) shift; cmd_down "$@" ;;
    purge) cmd_down --purge ;;
    status) cmd_status ;;
    psql) shift; cmd_psql "$@" ;;
    install-postgres) install_postgres ;;
    start) shift; cmd_start "$@" ;;
    stop) shift; cmd_stop "$@" ;;
    restart) shift; cmd_restart "$@" ;;
    *)
        awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "${BASH_SOURCE[0]}" >&2
        exit 2
        ;;
esac
