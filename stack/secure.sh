# shellcheck shell=bash disable=SC2034
# stack/secure.sh: the secured stack, sourced by stack/stack.sh when STACK_SECURITY=on.
#
#   Kafka       SASL_SSL only (SCRAM-SHA-512, credentials bootstrapped with `kafka-storage format
#               --add-scram`), StandardAuthorizer, super user admin only, no ACL = no access
#   principals  allocation (the service) and client (a test client), each with the ACLs it needs
#   registry    Apicurio on loopback (private port STACK_REGISTRY_PORT), reached through nginx with
#               TLS and HTTP basic auth on STACK_REGISTRY_PROXY_PORT
#   PostgreSQL  ssl=on with the stack's certificate; TCP only as hostssl with scram-sha-256
#
# Everything secret is generated on the first `up` into $STACK_HOME/secure/ (mode 700): a throwaway
# CA, the servers' certificate (SAN localhost, 127.0.0.1), random passwords, and the env files
# service.env, client.env and admin.env. A STACK_HOME is either plain or secured for its lifetime:
# switch with `stack/stack.sh purge` or use another STACK_HOME.

STACK_REGISTRY_PROXY_PORT=${STACK_REGISTRY_PROXY_PORT:-8444}
SECURE_DIR=$STACK_HOME/secure
NGINX_CONF=$SECURE_DIR/nginx.conf
SCRAM="SCRAM-SHA-512"
PRINCIPALS=(admin allocation client)

secure_password() { <"$SECURE_DIR/$1.password" tr -d '\n'; }

# The CA, the servers' certificate and key (PEM, and PKCS12 for Kafka), and every password.
secure_material() {
    mkdir -p "$SECURE_DIR" && chmod 700 "$SECURE_DIR"
    if [[ -d $DATA_DIR ]] && [[ ! -f $SECURE_DIR/.complete ]] && [[ -n $(ls -A "$DATA_DIR" 2>/dev/null) ]]; then
        die "$STACK_HOME holds a plain stack's data: run 'stack/stack.sh purge' first, or use another STACK_HOME"
    fi
    if [[ -f $SECURE_DIR/.complete ]]; then
        secure_owner_material
        return 0
    fi
    command -v openssl >/dev/null || die "openssl not found (apt-get install openssl)"
    say "generating a throwaway CA, the servers' certificate and passwords in $SECURE_DIR"
    local name old_umask
    old_umask=$(umask)
    umask 077
    for name in "${PRINCIPALS[@]}" keystore pg-allocation pg-allocation-owner pg-apicurio; do
        openssl rand -hex 16 >"$SECURE_DIR/$name.password"
    done
    (
        cd "$SECURE_DIR"
        openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=allocation stack CA" \
            -keyout ca.key -out ca.pem -addext basicConstraints=critical,CA:TRUE \
            -addext keyUsage=critical,keyCertSign,cRLSign
        openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout server.key -out server.csr
        printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "extendedKeyUsage=serverAuth" \
            "basicConstraints=CA:FALSE" "keyUsage=digitalSignature,keyEncipherment" >server.ext
        openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -days 30 \
            -extfile server.ext -out server.pem
        openssl pkcs12 -export -in server.pem -inkey server.key -name kafka -out server.p12 \
            -passout "pass:$(secure_password keystore)"
        rm -f server.csr server.ext ca.srl
    ) >"$LOG_DIR/secure-openssl.log" 2>&1 || { log_tail "$LOG_DIR/secure-openssl.log"; die "openssl failed"; }
    secure_env_files
    umask "$old_umask"
    chmod 644 "$SECURE_DIR/ca.pem"
    touch "$SECURE_DIR/.complete"
}

# A secured stack made before the owner role existed: its password, and its URL in admin.env.
secure_owner_material() {
    [[ -f $SECURE_DIR/pg-allocation-owner.password ]] && return 0
    say "generating the database owner's password in $SECURE_DIR"
    (umask 077 && openssl rand -hex 16 >"$SECURE_DIR/pg-allocation-owner.password" && secure_env_files)
}

# service.env, client.env, admin.env: the settings of the `allocation` command for each principal.
secure_env_files() {
    local who pg_password
    pg_password=$(secure_password pg-allocation)
    for who in "${PRINCIPALS[@]}"; do
        cat >"$SECURE_DIR/$who.env" <<EOF
KAFKA_BOOTSTRAP_SERVERS=127.0.0.1:$STACK_KAFKA_PORT
KAFKA_SECURITY_PROTOCOL=SASL_SSL
KAFKA_SASL_MECHANISM=$SCRAM
KAFKA_SASL_USERNAME=$who
KAFKA_SASL_PASSWORD=$(secure_password "$who")
KAFKA_SSL_CA_LOCATION=$SECURE_DIR/ca.pem
SCHEMA_REGISTRY_URL=https://127.0.0.1:$STACK_REGISTRY_PROXY_PORT/apis/ccompat/v7
SCHEMA_REGISTRY_BASIC_AUTH_USER_INFO=$who:$(secure_password "$who")
SCHEMA_REGISTRY_CA_LOCATION=$SECURE_DIR/ca.pem
DATABASE_URL='postgresql://allocation:$pg_password@127.0.0.1:$STACK_PG_PORT/allocation?sslmode=verify-full&sslrootcert=$SECURE_DIR/ca.pem'
EOF
    done
    # Only the admin migrates: the database's owner role, which the service's role is not.
    echo "MIGRATION_DATABASE_URL='postgresql://allocation_owner:$(secure_password pg-allocation-owner)@127.0.0.1:$STACK_PG_PORT/allocation?sslmode=verify-full&sslrootcert=$SECURE_DIR/ca.pem'" \
        >>"$SECURE_DIR/admin.env"
    # Kafka's own Java tools (kafka-acls, kafka-topics ...) as the admin: --command-config admin.properties
    cat >"$SECURE_DIR/admin.properties" <<EOF
security.protocol=SASL_SSL
sasl.mechanism=$SCRAM
sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required username="admin" password="$(secure_password admin)";
ssl.truststore.type=PEM
ssl.truststore.location=$SECURE_DIR/ca.pem
EOF
}

# -------------------------------------------------------------------- Kafka ---

kafka_extra_properties() {
    sed -e "s|@PORT@|$STACK_KAFKA_PORT|g" -e "s|@CONTROLLER_PORT@|$STACK_KAFKA_CONTROLLER_PORT|g" \
        -e "s|@PROXIED_PORT@|$STACK_KAFKA_PROXIED_PORT|g" -e "s|@PROXIED_BIND_PORT@|$STACK_KAFKA_PROXIED_BIND_PORT|g" \
        -e "s|@SECURE_DIR@|$SECURE_DIR|g" -e "s|@ADMIN_PASSWORD@|$(secure_password admin)|g" \
        -e "s|@KEYSTORE_PASSWORD@|$(secure_password keystore)|g" "$STACK_SRC/secure/server.properties.in"
}

secure_format_args() {
    local who
    KAFKA_FORMAT_ARGS=()
    for who in "${PRINCIPALS[@]}"; do
        KAFKA_FORMAT_ARGS+=(--add-scram "$SCRAM=[name=$who,password=$(secure_password "$who")]")
    done
}

# Up when the SASL_SSL listener completes a TLS handshake and answers ApiVersions (allowed before
# authentication); the ACL commands that follow wait for the rest.
kafka_answers() {
    python3 - "$STACK_KAFKA_PORT" "$SECURE_DIR/ca.pem" "${1:-2}" >/dev/null 2>&1 <<'EOF'
import socket, ssl, struct, sys
port, ca, timeout = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
context = ssl.create_default_context(cafile=ca)
with socket.create_connection(("127.0.0.1", port), timeout=timeout) as raw:
    with context.wrap_socket(raw, server_hostname="127.0.0.1") as sock:
        body = struct.pack(">hhih", 18, 0, 1, 5) + b"probe"
        sock.sendall(struct.pack(">i", len(body)) + body)
        size = struct.unpack(">i", sock.recv(4))[0]
        sys.exit(0 if size > 4 else 1)
EOF
}

kafka_admin_tool() { # MAIN_CLASS ARGS...
    kafka_java "$@" --bootstrap-server "127.0.0.1:$STACK_KAFKA_PORT" --command-config "$SECURE_DIR/admin.properties"
}

acl() { # PRINCIPAL ARGS...: allow PRINCIPAL, idempotently
    local who=$1
    shift
    kafka_admin_tool org.apache.kafka.tools.AclCommand --add --allow-principal "User:$who" --force "$@"
}

# Exactly what each principal needs, on the topic names of the settings' defaults (TOPIC_* override).
secure_acls() {
    local commands=(--topic "${TOPIC_ADD_BATCH:-add-batch}" --topic "${TOPIC_ALLOCATE:-allocate}" --topic "${TOPIC_BATCH_QUANTITY:-batch-quantity}")
    local events=(--topic "${TOPIC_LINE_ALLOCATED:-line-allocated}" --topic "${TOPIC_LINE_DEALLOCATED:-line-deallocated}" --topic "${TOPIC_OUT_OF_STOCK:-out-of-stock}" --topic "${TOPIC_COMMAND_REJECTED:-command-rejected}")
    local dlq=(--topic "${TOPIC_DLQ:-allocation-dlq}")
    local group=${CONSUMER_GROUP:-allocation} log=$LOG_DIR/secure-acls.log pids=() pid failed=0
    # ACLs live in the cluster's metadata: once granted, they survive restarts. The stamp names
    # the grant's revision: a stack granted before a topic was added grants again (idempotent).
    local stamp=$DATA_DIR/kafka/.acls-granted-2  # 2: command-rejected
    [[ -f $stamp ]] && return 0
    say "granting the ACLs of principals allocation and client ..."
    : >"$log"
    {
        # the service: read commands with its group; write events and dead letters; create its
        # own topics (`allocation prepare`). Read and Write imply Describe.
        acl allocation --operation Read "${commands[@]}" --group "$group" &
        pids+=($!)
        acl allocation --operation Write "${events[@]}" "${dlq[@]}" &
        pids+=($!)
        acl allocation --operation Create "${commands[@]}" "${events[@]}" "${dlq[@]}" &
        pids+=($!)
        # the client: write commands, read events with groups named client-*
        acl client --operation Write "${commands[@]}" &
        pids+=($!)
        acl client --operation Read "${events[@]}" &
        pids+=($!)
        acl client --operation Read --resource-pattern-type prefixed --group client- &
        pids+=($!)
        for pid in "${pids[@]}"; do wait "$pid" || failed=1; done
    } >>"$log" 2>&1
    ((failed == 0)) || { log_tail "$log"; die "granting ACLs failed; read $log"; }
    touch "$stamp"
    say "ACLs granted ($(elapsed) s)"
}

# --------------------------------------------------------------- PostgreSQL ---

eval "plain_$(declare -f pg_init_cluster)"

# TLS with the stack's certificate; over TCP, hostssl with scram-sha-256 only.
pg_init_cluster() {
    plain_pg_init_cluster
    install -m 600 "$SECURE_DIR/server.pem" "$PG_DATA/server.crt"
    install -m 600 "$SECURE_DIR/server.key" "$PG_DATA/server.key"
    as_root && chown postgres:postgres "$PG_DATA/server.crt" "$PG_DATA/server.key"
    as_pg tee "$PG_DATA/secure.conf" >/dev/null <<'EOF'
# written by stack/secure.sh (STACK_SECURITY=on)
ssl = on
ssl_cert_file = 'server.crt'
ssl_key_file = 'server.key'
ssl_min_protocol_version = 'TLSv1.2'
EOF
    grep -qs "secure.conf" "$PG_DATA/postgresql.conf" \
        || echo "include_if_exists = 'secure.conf'" | as_pg tee -a "$PG_DATA/postgresql.conf" >/dev/null
    as_pg tee "$PG_DATA/pg_hba.conf" >/dev/null <<'EOF'
# written by stack/secure.sh: the superuser over the stack's own unix socket; TCP only with TLS
local     all   postgres                  trust
local     all   all                       scram-sha-256
hostssl   all   all       127.0.0.1/32    scram-sha-256
hostssl   all   all       ::1/128         scram-sha-256
EOF
}

pg_select1() {
    PGPASSWORD=$(secure_password pg-allocation) PGCONNECT_TIMEOUT=3 "$PG_BIN/psql" -X -q -At \
        "host=127.0.0.1 port=$STACK_PG_PORT user=allocation dbname=allocation sslmode=verify-full sslrootcert=$SECURE_DIR/ca.pem" \
        -c 'select 1' 2>/dev/null | grep -qx 1
}

pg_wait_and_setup() {
    pg_wait
    pg_superuser_psql -q -d postgres -f "$STACK_SRC/postgres/init.sql" >/dev/null \
        || die "creating the roles and databases failed (stack/postgres/init.sql)"
    # init.sql sets the plain stack's well-known passwords: replace them with generated ones
    pg_superuser_psql -q -d postgres -v ON_ERROR_STOP=1 \
        -v a="$(secure_password pg-allocation)" -v r="$(secure_password pg-apicurio)" \
        -v o="$(secure_password pg-allocation-owner)" >/dev/null <<'EOF' \
        || die "setting the database passwords failed"
ALTER ROLE allocation_owner PASSWORD :'o';
ALTER ROLE allocation PASSWORD :'a';
ALTER ROLE apicurio PASSWORD :'r';
EOF
    pg_select1 || die "PostgreSQL is up but 'select 1' over TLS as allocation@127.0.0.1:$STACK_PG_PORT/allocation fails; read $PG_LOG"
}

# -------------------------------------------------------- registry proxy ---

nginx_pid() {
    local pid
    pid=$(cat "$RUN_DIR/nginx.pid" 2>/dev/null) || return 1
    [[ $pid =~ ^[0-9]+$ ]] && alive "$pid" && [[ "$(cmdline "$pid") " == *"nginx"*" $NGINX_CONF "* ]] && echo "$pid"
}

registry_proxy_answers() {
    curl -fsS -m 2 -o /dev/null --cacert "$SECURE_DIR/ca.pem" \
        -u "allocation:$(secure_password allocation)" \
        "https://127.0.0.1:$STACK_REGISTRY_PROXY_PORT/apis/ccompat/v7/subjects" 2>/dev/null
}

nginx_start() {
    nginx_pid >/dev/null && return 0
    if ! command -v nginx >/dev/null; then
        as_root || die "nginx not found (apt-get install nginx-light)"
        say "installing Debian's nginx-light (apt-get) ..."
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >&2 \
            || { apt-get update -q >&2 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q nginx-light >&2; } \
            || die "apt-get could not install nginx-light"
    fi
    port_free_or_die "$STACK_REGISTRY_PROXY_PORT" STACK_REGISTRY_PROXY_PORT
    local who
    for who in "${PRINCIPALS[@]}"; do
        printf '%s:%s\n' "$who" "$(secure_password "$who" | openssl passwd -6 -stdin)"
    done >"$SECURE_DIR/htpasswd"
    chmod 644 "$SECURE_DIR/htpasswd" # hashes only; nginx's workers run as nobody
    chmod 711 "$SECURE_DIR"
    mkdir -p "$RUN_DIR/nginx"
    sed -e "s|@RUN_DIR@|$RUN_DIR|g" -e "s|@LOG_DIR@|$LOG_DIR|g" -e "s|@SECURE_DIR@|$SECURE_DIR|g" \
        -e "s|@PROXY_PORT@|$STACK_REGISTRY_PROXY_PORT|g" -e "s|@REGISTRY_PORT@|$STACK_REGISTRY_PORT|g" \
        "$STACK_SRC/secure/nginx.conf.in" >"$NGINX_CONF"
    say "starting nginx (TLS + basic auth) for the registry on 127.0.0.1:$STACK_REGISTRY_PROXY_PORT ..."
    setsid nohup nginx -c "$NGINX_CONF" -e "$LOG_DIR/nginx-error.log" >"$LOG_DIR/nginx.out" 2>&1 </dev/null 9>&- &
    echo $! >"$RUN_DIR/nginx.pid"
    wait_for nginx "$!" 30 registry_proxy_answers "$LOG_DIR/nginx-error.log" "$LOG_DIR/nginx.out"
}

nginx_stop() {
    local pid
    pid=$(nginx_pid) || { rm -f "$RUN_DIR/nginx.pid"; return 0; }
    say "stopping nginx (pid $pid)"
    stop_pid "$pid" 10 nginx
    rm -f "$RUN_DIR/nginx.pid"
}

# ----------------------------------------------------------------- commands ---

print_env() {
    local env
    env=$(sed -e 's/^/export /' "$SECURE_DIR/allocation.env")
    printf '%s\n' "$env" >"$STACK_HOME/env"
    printf '%s\n' "$env"
    say "(the service's principal; the test client's settings: $SECURE_DIR/client.env, the admin's: $SECURE_DIR/admin.env)"
}

cmd_up() {
    local PID pg_pid kafka_pid reg_pid
    prepare_start
    secure_material
    secure_registry_database
    secure_format_args
    launch postgres && pg_pid=$PID
    launch kafka && kafka_pid=$PID
    launch registry && reg_pid=$PID
    wait_answers kafka "$kafka_pid"
    secure_acls
    wait_answers registry "$reg_pid"
    nginx_start
    say "secured stack up in $(elapsed) s: postgres pid $pg_pid, kafka pid $kafka_pid, registry pid $reg_pid, nginx pid $(nginx_pid)"
    print_env
}

# The registry reaches PostgreSQL over TLS with its generated password (also for `start registry`).
secure_registry_database() {
    APICURIO_DB_PASSWORD=$(secure_password pg-apicurio)
    APICURIO_JDBC_QUERY="?sslmode=verify-full&sslrootcert=$SECURE_DIR/ca.pem"
}
if [[ -f $SECURE_DIR/.complete ]]; then secure_registry_database; fi

eval "plain_$(declare -f cmd_status)"

cmd_status() {
    plain_cmd_status
    local pid answers="NOT answering"
    if pid=$(nginx_pid); then
        registry_proxy_answers && answers=answers
        printf '%-9s running  pid %-8s port %-6s %s\n' proxy "$pid" "$STACK_REGISTRY_PROXY_PORT" "$answers"
    else
        printf '%-9s stopped  %-12s port %-6s\n' proxy "" "$STACK_REGISTRY_PROXY_PORT"
    fi
}

eval "plain_$(declare -f cmd_down)"

cmd_down() {
    [[ -d $STACK_HOME ]] && nginx_stop
    plain_cmd_down "$@"
    if [[ ${1:-} == --purge ]]; then rm -rf "$SECURE_DIR"; fi
}
