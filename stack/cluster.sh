# shellcheck shell=bash
# stack/cluster.sh: the cluster topology of the stack, STACK_TOPOLOGY=cluster (see DESIGN.md).
# Sourced by stack/stack.sh, whose helpers it uses; the single-node stack never reads it.
#   etcd              3 members (Debian's etcd-server): Patroni's coordinator, no single point of failure
#   PostgreSQL        2 nodes under Patroni (Debian's patroni), synchronous_mode_strict
#   Apache Kafka      3 KRaft nodes, each broker and controller, from the same jars as the single stack
#   Apicurio Registry 1 node, storing in the PostgreSQL primary (JDBC multi-host, targetServerType=primary)
#
# Usage: STACK_TOPOLOGY=cluster stack/stack.sh COMMAND
#   up                start whatever is not running; return when all answer: Kafka with 3 brokers in
#                     its metadata, Patroni with a leader and a streaming synchronous standby, the
#                     registry; print the env (also written to $STACK_HOME/env)
#   down [--purge]    stop everything (SIGTERM, SIGKILL after a timeout); --purge deletes the data
#   purge             the same as down --purge
#   status            one line per node: running or not, pid, port, its role and whether it answers
#   psql [ARGS]       psql as the superuser on the current primary, over its unix socket
#   install-postgres  apt-get install PostgreSQL, Patroni, etcd (and python3-etcd) if missing
# One node at a time, for fault-injection tests (NODE: kafka-1..3, postgres-1..2, etcd-1..3, registry):
#   start NODE        start it unless it runs; return once it answers (kafka-N: back in the metadata;
#                     postgres-N: Patroni has it running as leader or replica)
#   stop NODE [--signal TERM|KILL]
#                     stop it; return once its processes are gone. TERM (default): graceful, SIGKILL
#                     after STACK_STOP_TIMEOUT s; KILL: SIGKILL now. postgres-N: the node, i.e. its
#                     Patroni and its PostgreSQL (with KILL: both at once, as a lost host)
#   failover postgres [--signal TERM|KILL]
#                     stop (TERM: Patroni shuts its PostgreSQL down and hands over) or crash (KILL:
#                     Patroni and PostgreSQL SIGKILLed; the leader key expires after the ttl) the
#                     current primary; return once the other node is primary and the old one is back
#                     as its synchronous standby (Patroni rewinds it, or copies it anew). Prints both times.
#
# Ports (environment, like the single stack): node N of Kafka listens on STACK_KAFKA_PORT + 100*(N-1)
# (9092, 9192, 9292) and its controller on STACK_KAFKA_CONTROLLER_PORT + 100*(N-1) (9093, 9193, 9293);
# PostgreSQL node N on STACK_PG_PORT + N-1 (5432, 5433), its Patroni REST API on
# STACK_PATRONI_PORT + N-1 (8008, 8009); etcd member N on STACK_ETCD_PORT + 2*(N-1) for clients and
# the port above for peers (2379/2380, 2381/2382, 2383/2384); the registry on STACK_REGISTRY_PORT.
# One STACK_HOME holds one topology at a time; processes are recognized by STACK_HOME paths.

STACK_PATRONI_PORT=${STACK_PATRONI_PORT:-8008}
STACK_ETCD_PORT=${STACK_ETCD_PORT:-2379}
CL_KAFKA_HEAP=${STACK_CLUSTER_KAFKA_HEAP:-384m}
CL_PATRONI_TIMEOUT=${STACK_PATRONI_TIMEOUT:-120}
KAFKA_NODES=(1 2 3)
PG_NODES=(1 2)
ETCD_NODES=(1 2 3)

kafka_port() { echo $((STACK_KAFKA_PORT + 100 * ($1 - 1))); }
kafka_controller_port() { echo $((STACK_KAFKA_CONTROLLER_PORT + 100 * ($1 - 1))); }
node_pg_port() { echo $((STACK_PG_PORT + $1 - 1)); }
rest_port() { echo $((STACK_PATRONI_PORT + $1 - 1)); }
etcd_port() { echo $((STACK_ETCD_PORT + 2 * ($1 - 1))); }
etcd_peer_port() { echo $((STACK_ETCD_PORT + 2 * ($1 - 1) + 1)); }

bootstrap_servers() {
    local n out=()
    for n in "${KAFKA_NODES[@]}"; do out+=("127.0.0.1:$(kafka_port "$n")"); done
    local IFS=,
    echo "${out[*]}"
}

etcd_endpoints() {
    local n out=()
    for n in "${ETCD_NODES[@]}"; do out+=("127.0.0.1:$(etcd_port "$n")"); done
    local IFS=,
    echo "${out[*]}"
}

# ---------------------------------------------------------------- install ---

cluster_packages_missing() {
    pg_bin_dir >/dev/null || return 0
    command -v patroni >/dev/null && command -v etcd >/dev/null && command -v etcdctl >/dev/null \
        || return 0
    # Debian's patroni depends on one DCS client of several; the etcd one may not be the one chosen.
    /usr/bin/python3 -c 'import etcd, dns' 2>/dev/null || return 0
    return 1
}

# Idempotent; a no-op (a few ms) when everything is there.
install_cluster() {
    install_postgres
    cluster_packages_missing || return 0
    as_root || die "Patroni/etcd missing; run: sudo apt-get install -y patroni etcd-server etcd-client python3-etcd"
    say "installing Patroni and etcd (apt-get) ..."
    export DEBIAN_FRONTEND=noninteractive
    # Debian's packages start services where an init system runs them: none here, and the
    # stack runs its own members in any case. A policy-rc.d keeps apt from starting etcd on 2379.
    local policy=/usr/sbin/policy-rc.d made_policy=false
    if [[ ! -e $policy ]]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod +x "$policy" && made_policy=true
    fi
    apt-get install -y -q -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
        patroni etcd-server etcd-client python3-etcd >&2 \
        || { apt-get update -q >&2 && apt-get install -y -q patroni etcd-server etcd-client python3-etcd >&2; } \
        || { $made_policy && rm -f "$policy"; die "apt-get could not install patroni, etcd-server, etcd-client, python3-etcd"; }
    $made_policy && rm -f "$policy"
    cluster_packages_missing && die "installed, yet patroni, etcd, etcdctl or python3-etcd is still missing"
    return 0
}

# ------------------------------------------------------------------ processes ---

# Every process whose command line contains "$1 " (the signature: a fixed token, then a path
# under this STACK_HOME as a whole argument), one pid a line.
pids_with() { # SIGNATURE
    local dir line
    local -a args
    [[ -n $1 ]] || die "internal error: an empty process signature would match every process"
    for dir in /proc/[0-9]*; do
        args=()
        { mapfile -d '' args <"$dir/cmdline"; } 2>/dev/null || continue
        line="${args[*]} "
        [[ $line == *"$1 "* ]] && alive "${dir#/proc/}" && echo "${dir#/proc/}"
    done
    return 0
}

cl_paths() {
    pg_paths # sets PG_ALT and says whether the postgres user can reach STACK_HOME
    if [[ $PG_DATA == "$PG_ALT"/* ]]; then CL_PG_ROOT=$PG_ALT/cluster; else CL_PG_ROOT=$DATA_DIR; fi
    CL_ID_FILE=$DATA_DIR/kafka-cluster.id
}
pg_node_data() { echo "$CL_PG_ROOT/postgres-$1"; }
pg_node_sock() { echo "$CL_PG_ROOT/sock-$1"; }

signature_of() { # NODE
    case $1 in
        kafka-*) printf '%s' "kafka.Kafka $RUN_DIR/$1.properties" ;;
        etcd-*) printf '%s' "--data-dir $DATA_DIR/$1" ;;
        patroni-*) printf '%s' "patroni $RUN_DIR/$1.yml" ;;
        postmaster-*) printf '%s' "postgres -D $(pg_node_data "${1#postmaster-}")" ;;
        registry) printf '%s' "-jar $APICURIO_JAR" ;;
        *) die "internal error: no process signature for '$1'" ;;
    esac
}

node_pid() { # NODE: the first process of it, if it runs
    local pid
    pid=$(pids_with "$(signature_of "$1")" | head -n 1)
    [[ -n $pid ]] && echo "$pid"
}

# PostgreSQL node N's postmaster and children: by command line and by working directory.
pg_node_pids() { # N
    local dir data sig line
    local -a args
    data=$(pg_node_data "$1") sig="$(signature_of "postmaster-$1") "
    for dir in /proc/[0-9]*; do
        args=()
        { mapfile -d '' args <"$dir/cmdline"; } 2>/dev/null || continue
        line="${args[*]} "
        if [[ $line == *"$sig"* ]] || { [[ $line == *postgres* ]] && [[ $dir/cwd -ef $data ]]; }; then
            echo "${dir#/proc/}"
        fi
    done
    return 0
}

every_pid() {
    local n
    for n in "${KAFKA_NODES[@]}"; do pids_with "$(signature_of "kafka-$n")"; done
    for n in "${ETCD_NODES[@]}"; do pids_with "$(signature_of "etcd-$n")"; done
    for n in "${PG_NODES[@]}"; do
        pids_with "$(signature_of "patroni-$n")"
        [[ -d $(pg_node_data "$n") ]] && pg_node_pids "$n"
    done
    pids_with "$(signature_of registry)"
    return 0
}

# The prefix that runs a program (Patroni) as the postgres user when root: PostgreSQL refuses
# root. setpriv and env exec, so the pid started is the program's own (runuser would fork).
as_pg_prefix() {
    AS_PG=()
    if as_root; then AS_PG=(setpriv --reuid=postgres --regid=postgres --init-groups -- env HOME="$CL_PG_ROOT"); fi
}

# Start a server in its own session, output to LOG, detached from the lock (fd 9).
spawn() { # LOG COMMAND...
    local log=$1
    shift
    setsid nohup "$@" >>"$log" 2>&1 </dev/null 9>&- &
}

# ----------------------------------------------------------------------- etcd ---

etcd_start() { # N
    local n=$1 members=() m
    for m in "${ETCD_NODES[@]}"; do members+=("etcd-$m=http://127.0.0.1:$(etcd_peer_port "$m")"); done
    port_free_or_die "$(etcd_port "$n")" STACK_ETCD_PORT
    port_free_or_die "$(etcd_peer_port "$n")" STACK_ETCD_PORT
    mkdir -p "$DATA_DIR/etcd-$n"
    chmod 700 "$DATA_DIR/etcd-$n"
    say "starting etcd-$n on 127.0.0.1:$(etcd_port "$n") (peers $(etcd_peer_port "$n")) ..."
    local IFS=,
    spawn "$LOG_DIR/etcd-$n.log" etcd --name "etcd-$n" --data-dir "$DATA_DIR/etcd-$n" \
        --listen-client-urls "http://127.0.0.1:$(etcd_port "$n")" \
        --advertise-client-urls "http://127.0.0.1:$(etcd_port "$n")" \
        --listen-peer-urls "http://127.0.0.1:$(etcd_peer_port "$n")" \
        --initial-advertise-peer-urls "http://127.0.0.1:$(etcd_peer_port "$n")" \
        --initial-cluster "${members[*]}" --initial-cluster-state new \
        --initial-cluster-token "allocation-$(printf '%s' "$STACK_HOME" | md5sum | cut -c1-10)" \
        --logger zap --log-level warn --quota-backend-bytes 268435456 --auto-compaction-retention 1h
}

etcd_healthy() { # [N]: that member, or a quorum of all
    local endpoints
    if [[ -n ${1:-} ]]; then endpoints=127.0.0.1:$(etcd_port "$1"); else endpoints=$(etcd_endpoints); fi
    ETCDCTL_API=3 timeout 5 etcdctl --endpoints="$endpoints" --dial-timeout=2s --command-timeout=2s \
        endpoint health >/dev/null 2>&1
}

# -------------------------------------------------------------------- Patroni ---

patroni_config() { # N
    local n=$1 name=postgres-$1
    sed -e "s|@NAME@|$name|g" -e "s|@REST_PORT@|$(rest_port "$n")|g" \
        -e "s|@ETCD_HOSTS@|$(etcd_endpoints)|g" -e "s|@PG_PORT@|$(node_pg_port "$n")|g" \
        -e "s|@PG_DATA@|$(pg_node_data "$n")|g" -e "s|@PG_BIN@|$PG_BIN|g" \
        -e "s|@PG_ROOT@|$CL_PG_ROOT|g" -e "s|@PG_SOCK@|$(pg_node_sock "$n")|g" \
        "$STACK_SRC/cluster/patroni.yml.in" >"$RUN_DIR/patroni-$n.yml"
}

patroni_start() { # N
    local n=$1
    port_free_or_die "$(node_pg_port "$n")" STACK_PG_PORT
    port_free_or_die "$(rest_port "$n")" STACK_PATRONI_PORT
    # leftovers of a crashed node (postmaster children) would keep its data directory busy
    local -a left
    mapfile -t left < <(pg_node_pids "$n")
    ((${#left[@]} == 0)) || kill_pids "postgres-$n" "${left[@]}"
    mkdir -p "$CL_PG_ROOT" "$(pg_node_sock "$n")"
    if as_root; then
        chown postgres:postgres "$CL_PG_ROOT" "$(pg_node_sock "$n")"
        [[ ! -d $(pg_node_data "$n") ]] || chown postgres:postgres "$(pg_node_data "$n")"
    fi
    chmod 700 "$(pg_node_sock "$n")" # the superuser's trusted socket: not for every local user
    patroni_config "$n"
    say "starting Patroni postgres-$n (PostgreSQL on 127.0.0.1:$(node_pg_port "$n"), REST $(rest_port "$n")) ..."
    local -a AS_PG
    as_pg_prefix
    spawn "$LOG_DIR/patroni-$n.log" "${AS_PG[@]}" /usr/bin/patroni "$RUN_DIR/patroni-$n.yml"
}

# "NAME ROLE STATE LAG" per member, as the first Patroni that answers sees the cluster.
patroni_members() {
    local n out
    for n in "${PG_NODES[@]}"; do
        out=$(curl -fsS -m 2 "http://127.0.0.1:$(rest_port "$n")/cluster" 2>/dev/null) || continue
        python3 -c '
import json, sys
for m in json.load(sys.stdin).get("members", []):
    print(m["name"], m["role"], m["state"], m.get("lag", 0))' <<<"$out" && return 0
    done
    return 1
}

pg_leader() { # prints N of the running leader
    local name role state lag
    while read -r name role state lag; do
        if [[ $role == leader && $state == running ]]; then echo "${name#postgres-}"; return 0; fi
    done < <(patroni_members)
    return 1
}

# Node N's own Patroni says it runs PostgreSQL as the primary.
is_primary() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$(rest_port "$1")/primary" 2>/dev/null; }

# Node N's Patroni says it is the synchronous standby, streaming from the primary.
is_sync_standby() { curl -fsS -m 2 -o /dev/null "http://127.0.0.1:$(rest_port "$1")/sync" 2>/dev/null; }

# A leader, a synchronous standby, and a write commits (so it was replicated to the standby).
patroni_ready() {
    local leader other
    leader=$(pg_leader) || return 1
    for other in "${PG_NODES[@]}"; do
        [[ $other == "$leader" ]] || is_sync_standby "$other" || return 1
    done
    PGCONNECT_TIMEOUT=3 timeout 10 "$PG_BIN/psql" -X -q -At -h "$(pg_node_sock "$leader")" \
        -p "$(node_pg_port "$leader")" -U postgres -d postgres -c 'select txid_current()' >/dev/null 2>&1
}

wait_until_true() { # WHAT TIMEOUT CHECK [ARGS...]
    local what=$1 deadline=$((SECONDS + $2))
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || return 1
        sleep 0.3
    done
    say "$what ($(elapsed) s)"
}

pg_setup() {
    local leader
    leader=$(pg_leader) || die "no PostgreSQL leader"
    "$PG_BIN/psql" -X -q -h "$(pg_node_sock "$leader")" -p "$(node_pg_port "$leader")" -U postgres \
        -d postgres -f "$STACK_SRC/postgres/init.sql" >/dev/null \
        || die "creating the roles and databases failed (stack/postgres/init.sql on postgres-$leader)"
}

# ---------------------------------------------------------------------- Kafka ---

kafka_cluster_start() { # N
    local n=$1 data=$DATA_DIR/kafka-$1 voters=() m props=$RUN_DIR/kafka-$1.properties
    ensure_kafka_jars
    port_free_or_die "$(kafka_port "$n")" STACK_KAFKA_PORT
    port_free_or_die "$(kafka_controller_port "$n")" STACK_KAFKA_CONTROLLER_PORT
    for m in "${KAFKA_NODES[@]}"; do voters+=("$m@127.0.0.1:$(kafka_controller_port "$m")"); done
    mkdir -p "$data" "$LOG_DIR/kafka-$n"
    local IFS=,
    sed -e "s|@NODE_ID@|$n|g" -e "s|@VOTERS@|${voters[*]}|g" -e "s|@PORT@|$(kafka_port "$n")|g" \
        -e "s|@CONTROLLER_PORT@|$(kafka_controller_port "$n")|g" -e "s|@DATA_DIR@|$data|g" \
        "$STACK_SRC/cluster/kafka.properties.in" >"$props"
    unset IFS
    if [[ ! -f $data/meta.properties ]]; then
        # one cluster id for the three nodes, kept so that a wiped node can be formatted again
        [[ -s $CL_ID_FILE ]] || kafka_java kafka.tools.StorageTool random-uuid >"$CL_ID_FILE" \
            || die "could not run Kafka's StorageTool (java -cp $KAFKA_LIBS/*)"
        say "formatting Kafka storage of kafka-$n in $data (cluster id $(<"$CL_ID_FILE"))"
        kafka_java kafka.tools.StorageTool format -t "$(<"$CL_ID_FILE")" -c "$props" \
            >"$LOG_DIR/kafka-$n-format.log" 2>&1 \
            || { log_tail "$LOG_DIR/kafka-$n-format.log"; die "formatting kafka-$n failed"; }
    fi
    say "starting kafka-$n on 127.0.0.1:$(kafka_port "$n") (controller $(kafka_controller_port "$n")) ..."
    spawn "$LOG_DIR/kafka-$n.out" java -Xms128m -Xmx"$CL_KAFKA_HEAP" -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
        -Djava.awt.headless=true -Dlog4j2.configurationFile="$STACK_SRC/kafka/log4j2-broker.xml" \
        -Dkafka.logs.dir="$LOG_DIR/kafka-$n" -cp "$KAFKA_LIBS/*" kafka.Kafka "$props"
}

# Node N answers a Metadata request that lists all three brokers.
kafka_node_ready() { # N
    python3 "$STACK_SRC/kafka_probe.py" "127.0.0.1:$(kafka_port "$1")" 2 2>/dev/null \
        | grep -q "brokers=${#KAFKA_NODES[@]} "
}

kafka_all_ready() {
    local n
    for n in "${KAFKA_NODES[@]}"; do kafka_node_ready "$n" || return 1; done
}

# ------------------------------------------------------------------- registry ---

cluster_registry_start() {
    ensure_apicurio
    port_free_or_die "$STACK_REGISTRY_PORT" STACK_REGISTRY_PORT
    local hosts=() n
    for n in "${PG_NODES[@]}"; do hosts+=("127.0.0.1:$(node_pg_port "$n")"); done
    local IFS=,
    say "starting Apicurio Registry $APICURIO_VERSION on 127.0.0.1:$STACK_REGISTRY_PORT (PostgreSQL ${hosts[*]}, primary only) ..."
    (
        cd "$RUN_DIR" || exit
        : >"$REGISTRY_LOG"
        # targetServerType=primary: pgjdbc's target_session_attrs=read-write, so new connections
        # find the primary after a failover; the pool validates a connection before lending it,
        # or the connections to the old primary would fail one request each after a failover.
        spawn "$REGISTRY_LOG" env APICURIO_STORAGE_KIND=sql APICURIO_STORAGE_SQL_KIND=postgresql \
            APICURIO_DATASOURCE_URL="jdbc:postgresql://${hosts[*]}/apicurio?targetServerType=primary&connectTimeout=5&socketTimeout=30" \
            APICURIO_DATASOURCE_USERNAME=apicurio APICURIO_DATASOURCE_PASSWORD=apicurio \
            APICURIO_DATASOURCE_JDBC_INITIAL_SIZE=2 APICURIO_DATASOURCE_JDBC_MIN_SIZE=2 \
            APICURIO_DATASOURCE_JDBC_MAX_SIZE=20 \
            QUARKUS_HTTP_PORT="$STACK_REGISTRY_PORT" QUARKUS_HTTP_HOST=127.0.0.1 \
            QUARKUS_HTTP_ACCESS_LOG_ENABLED=false \
            java -Xms128m -Xmx384m -Dquarkus.datasource.postgresql.jdbc.validate-on-borrow=true \
            -Dquarkus.datasource.postgresql.jdbc.background-validation-interval=5S -jar "$APICURIO_JAR"
    )
}

# ------------------------------------------------------------------- commands ---

cluster_prepare() {
    mkdir -p "$CACHE_DIR" "$DATA_DIR" "$LOG_DIR" "$RUN_DIR"
    take_lock
    command -v java >/dev/null || die "java not found: the stack needs a Java 17+ runtime (apt-get install openjdk-17-jre-headless)"
    command -v curl >/dev/null || die "curl not found (apt-get install curl)"
    install_cluster
    PG_BIN=$(pg_bin_dir)
    cl_paths
    # the single stack's servers in this STACK_HOME would hold the same ports and the same lock
    if PID=$(running_pid kafka) || PID=$(running_pid postgres); then
        die "the single-node stack runs in $STACK_HOME (pid $PID): stop it first (stack/stack.sh down)"
    fi
}

print_cluster_env() {
    local env hosts=() n
    for n in "${PG_NODES[@]}"; do hosts+=("127.0.0.1:$(node_pg_port "$n")"); done
    local IFS=,
    env=$(
        cat <<EOF
export KAFKA_BOOTSTRAP_SERVERS=$(bootstrap_servers)
export SCHEMA_REGISTRY_URL=$REGISTRY_URL
export DATABASE_URL=postgresql://allocation:allocation@${hosts[*]}/allocation?target_session_attrs=read-write
export MIGRATION_DATABASE_URL=postgresql://allocation_owner:allocation_owner@${hosts[*]}/allocation?target_session_attrs=read-write
export TOPIC_REPLICATION_FACTOR=${#KAFKA_NODES[@]}
EOF
    )
    printf '%s\n' "$env" >"$STACK_HOME/env"
    printf '%s\n' "$env"
}

cluster_up() {
    local n
    cluster_prepare
    for n in "${ETCD_NODES[@]}"; do node_pid "etcd-$n" >/dev/null || etcd_start "$n"; done
    wait_until_true "etcd answers, 3 members" 60 etcd_healthy \
        || { log_tail "$LOG_DIR"/etcd-*.log; die "etcd did not become healthy within 60 s; read $LOG_DIR/etcd-*.log"; }
    for n in "${PG_NODES[@]}"; do node_pid "patroni-$n" >/dev/null || patroni_start "$n"; done
    for n in "${KAFKA_NODES[@]}"; do node_pid "kafka-$n" >/dev/null || kafka_cluster_start "$n"; done
    wait_until_true "PostgreSQL: a leader and a streaming synchronous standby" "$CL_PATRONI_TIMEOUT" patroni_ready \
        || { log_tail "$LOG_DIR"/patroni-*.log; die "Patroni has no leader with a synchronous standby after ${CL_PATRONI_TIMEOUT}s; read $LOG_DIR/patroni-*.log"; }
    pg_setup
    node_pid registry >/dev/null || cluster_registry_start
    wait_until_true "Kafka answers on all 3 nodes, 3 brokers in the metadata" "$KAFKA_TIMEOUT" kafka_all_ready \
        || { log_tail "$LOG_DIR"/kafka-*/server.log; die "Kafka did not list 3 brokers within ${KAFKA_TIMEOUT}s; read $LOG_DIR/kafka-*/server.log"; }
    wait_until_true "Apicurio Registry answers" "$REGISTRY_TIMEOUT" registry_answers \
        || { log_tail "$REGISTRY_LOG"; die "the registry did not answer within ${REGISTRY_TIMEOUT}s; read $REGISTRY_LOG"; }
    say "cluster up in $(elapsed) s"
    print_cluster_env
}

# SIGTERM every process given, wait up to the timeout for all, then SIGKILL what is left.
stop_all() { # LABEL PID...
    local label=$1 pid i
    shift
    (($#)) || return 0
    kill -TERM "$@" 2>/dev/null || true
    for ((i = 0; i < STOP_TIMEOUT * 10; i++)); do
        for pid in "$@"; do alive "$pid" && break; done
        alive "$pid" || return 0
        sleep 0.1
    done
    say "$label did not stop within ${STOP_TIMEOUT}s: SIGKILL"
    kill_pids "$label" "$@"
}

pids_of() { # NODE... (postgres-N: its Patroni and its PostgreSQL processes)
    local node
    for node in "$@"; do
        case $node in
            postgres-*)
                pids_with "$(signature_of "patroni-${node#postgres-}")"
                pg_node_pids "${node#postgres-}"
                ;;
            *) pids_with "$(signature_of "$node")" ;;
        esac
    done
}

stop_nodes() { # SIGNAL NODE...
    local signal=$1 node
    shift
    local -a pids
    mapfile -t pids < <(pids_of "$@")
    ((${#pids[@]})) || return 0
    if [[ $signal == KILL ]]; then
        say "killing $* (SIGKILL: ${pids[*]})"
        kill_pids "$*" "${pids[@]}"
    else
        say "stopping $*"
        # Patroni stops its own PostgreSQL: signal only Patroni, then whatever is left
        local -a first=()
        for node in "$@"; do
            if [[ $node == postgres-* ]]; then
                mapfile -t -O "${#first[@]}" first < <(pids_with "$(signature_of "patroni-${node#postgres-}")")
            fi
        done
        ((${#first[@]} == 0)) || stop_all "Patroni" "${first[@]}"
        mapfile -t pids < <(pids_of "$@")
        stop_all "$*" "${pids[@]}"
    fi
    say "$* stopped ($(elapsed) s)"
}

cluster_down() {
    local purge=false n left
    [[ ${1:-} == --purge ]] && purge=true
    [[ -d $STACK_HOME ]] || return 0
    take_lock
    cl_paths
    stop_nodes TERM registry
    # all brokers at once: stopped one by one, the last ones would wait for a lost controller quorum
    stop_nodes TERM kafka-1 kafka-2 kafka-3
    stop_nodes TERM postgres-1 postgres-2
    stop_nodes TERM etcd-1 etcd-2 etcd-3
    left=$(every_pid)
    # shellcheck disable=SC2086 # one pid a word
    [[ -z $left ]] || stop_all "leftover processes" $left
    left=$(every_pid)
    [[ -z $left ]] || die "processes of the cluster still run: $left"
    if $purge; then
        say "deleting $DATA_DIR"
        rm -rf "$DATA_DIR" "$PG_ALT"
    fi
    return 0
}

cluster_status() {
    local n pid role answers name state lag
    cl_paths
    PG_BIN=$(pg_bin_dir) || PG_BIN=/nonexistent
    declare -A roles=()
    while read -r name role state lag; do roles[$name]="$role, $state, lag $lag"; done < <(patroni_members || true)
    line() { # NODE PORT ANSWERS
        if pid=$(node_pid "$1"); then
            printf '%-11s running  pid %-8s port %-6s %s\n' "$1" "$pid" "$2" "$3"
        elif port_open "$2"; then
            printf '%-11s stopped  %-12s port %-6s in use by another program\n' "$1" "" "$2"
        else
            printf '%-11s stopped  %-12s port %-6s\n' "$1" "" "$2"
        fi
    }
    for n in "${ETCD_NODES[@]}"; do
        if port_open "$(etcd_port "$n")" && etcd_healthy "$n"; then answers=healthy; else answers="NOT healthy"; fi
        line "etcd-$n" "$(etcd_port "$n")" "$answers"
    done
    for n in "${PG_NODES[@]}"; do
        answers=${roles[postgres-$n]:-"not in the Patroni cluster"}
        if pid=$(node_pid "patroni-$n"); then
            printf '%-11s running  pid %-8s port %-6s %s (patroni REST %s)\n' "postgres-$n" "$pid" \
                "$(node_pg_port "$n")" "$answers" "$(rest_port "$n")"
        elif port_open "$(node_pg_port "$n")"; then
            printf '%-11s stopped  %-12s port %-6s in use by another program\n' "postgres-$n" "" "$(node_pg_port "$n")"
        else
            printf '%-11s stopped  %-12s port %-6s\n' "postgres-$n" "" "$(node_pg_port "$n")"
        fi
    done
    for n in "${KAFKA_NODES[@]}"; do
        port_open "$(kafka_port "$n")" && answers=$(python3 "$STACK_SRC/kafka_probe.py" "127.0.0.1:$(kafka_port "$n")" 2 2>/dev/null) \
            || answers="NOT answering"
        line "kafka-$n" "$(kafka_port "$n")" "$answers"
    done
    if registry_answers; then answers=answers; else answers="NOT answering"; fi
    line registry "$STACK_REGISTRY_PORT" "$answers"
}

# Parse NODE [--signal TERM|KILL] into NODE and SIGNAL.
parse_node_args() { # COMMAND ARGS...
    local cmd=$1
    shift
    local usage="usage: STACK_TOPOLOGY=cluster stack/stack.sh $cmd kafka-1..3|postgres-1..2|etcd-1..3|registry"
    [[ $cmd == start ]] || usage+=" [--signal TERM|KILL]"
    NODE=${1:-} SIGNAL=TERM
    case $NODE in
        kafka-[1-3] | postgres-[1-2] | etcd-[1-3] | registry) shift ;;
        *) die "$usage" ;;
    esac
    if [[ $cmd == start && $# -gt 0 ]]; then die "$usage"; fi
    while (($#)); do
        case $1 in
            --signal) (($# >= 2)) || die "$cmd: --signal needs a value"; SIGNAL=$2; shift 2 ;;
            --signal=*) SIGNAL=${1#*=}; shift ;;
            *) die "$cmd: unknown argument '$1' (expected --signal TERM|KILL)" ;;
        esac
    done
    SIGNAL=${SIGNAL#SIG}
    case $SIGNAL in TERM | KILL) ;; *) die "$cmd: --signal takes TERM or KILL, not '$SIGNAL'" ;; esac
}

cluster_start() {
    local NODE SIGNAL n
    parse_node_args start "$@"
    cluster_prepare
    n=${NODE##*-}
    case $NODE in
        kafka-*)
            node_pid "$NODE" >/dev/null || kafka_cluster_start "$n"
            wait_until_true "$NODE is back: 3 brokers in the metadata" "$KAFKA_TIMEOUT" kafka_node_ready "$n" \
                || { log_tail "$LOG_DIR/$NODE/server.log"; die "$NODE did not rejoin within ${KAFKA_TIMEOUT}s"; }
            ;;
        etcd-*)
            node_pid "$NODE" >/dev/null || etcd_start "$n"
            wait_until_true "$NODE is healthy" 60 etcd_healthy "$n" || die "$NODE not healthy within 60 s"
            ;;
        postgres-*)
            node_pid "patroni-$n" >/dev/null || patroni_start "$n"
            wait_until_true "$NODE runs as primary or synchronous standby" "$CL_PATRONI_TIMEOUT" pg_node_in_cluster "$n" \
                || { log_tail "$LOG_DIR/patroni-$n.log"; die "$NODE did not join within ${CL_PATRONI_TIMEOUT}s"; }
            ;;
        registry)
            node_pid registry >/dev/null || cluster_registry_start
            wait_until_true "the registry answers" "$REGISTRY_TIMEOUT" registry_answers || die "the registry did not answer"
            ;;
    esac
}

pg_node_in_cluster() { is_primary "$1" || is_sync_standby "$1"; }

cluster_stop() {
    local NODE SIGNAL
    parse_node_args stop "$@"
    [[ -d $STACK_HOME ]] || return 0
    take_lock
    cl_paths
    stop_nodes "$SIGNAL" "$NODE"
}

cluster_failover() {
    local SIGNAL=TERM old new t0 promoted
    [[ ${1:-} == postgres ]] || die "usage: STACK_TOPOLOGY=cluster stack/stack.sh failover postgres [--signal TERM|KILL]"
    shift
    while (($#)); do
        case $1 in
            --signal) (($# >= 2)) || die "failover: --signal needs a value"; SIGNAL=$2; shift 2 ;;
            --signal=*) SIGNAL=${1#*=}; shift ;;
            *) die "failover: unknown argument '$1' (expected --signal TERM|KILL)" ;;
        esac
    done
    SIGNAL=${SIGNAL#SIG}
    case $SIGNAL in TERM | KILL) ;; *) die "failover: --signal takes TERM or KILL, not '$SIGNAL'" ;; esac
    cluster_prepare
    old=$(pg_leader) || die "no PostgreSQL primary now (STACK_TOPOLOGY=cluster stack/stack.sh status)"
    new=$((old == 1 ? 2 : 1))
    is_sync_standby "$new" || die "postgres-$new is not a synchronous standby: a failover now could lose commits"
    t0=$EPOCHREALTIME
    stop_nodes "$SIGNAL" "postgres-$old"
    wait_until_true "postgres-$new is the primary" $((CL_PATRONI_TIMEOUT)) is_primary "$new" \
        || { log_tail "$LOG_DIR/patroni-$new.log"; die "postgres-$new was not promoted within ${CL_PATRONI_TIMEOUT}s"; }
    promoted=$(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }')
    patroni_start "$old"
    wait_until_true "postgres-$old is back as the synchronous standby" "$CL_PATRONI_TIMEOUT" is_sync_standby "$old" \
        || { log_tail "$LOG_DIR/patroni-$old.log"; die "postgres-$old did not come back as a synchronous standby within ${CL_PATRONI_TIMEOUT}s"; }
    say "failover ($SIGNAL): postgres-$new primary ${promoted} s after the fault; postgres-$old standby again after $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.1f", b - a }') s"
}

cluster_psql() {
    local leader
    PG_BIN=$(pg_bin_dir) || die "PostgreSQL is not installed (STACK_TOPOLOGY=cluster stack/stack.sh install-postgres)"
    cl_paths
    leader=$(pg_leader) || die "no PostgreSQL primary now (STACK_TOPOLOGY=cluster stack/stack.sh status)"
    exec "$PG_BIN/psql" -X -h "$(pg_node_sock "$leader")" -p "$(node_pg_port "$leader")" -U postgres "$@"
}

cluster_main() {
    case ${1:-} in
        up) cluster_up ;;
        down) shift; cluster_down "$@" ;;
        purge) cluster_down --purge ;;
        status) cluster_status ;;
        psql) shift; cluster_psql "$@" ;;
        install-postgres) install_cluster ;;
        start) shift; cluster_start "$@" ;;
        stop) shift; cluster_stop "$@" ;;
        failover) shift; cluster_failover "$@" ;;
        *)
            awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$STACK_SRC/cluster.sh" >&2
            exit 2
            ;;
    esac
}
