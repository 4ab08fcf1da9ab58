# shellcheck shell=bash disable=SC2034
# Shared by stack/stack.sh and stack/bin/*: pinned versions, ports, paths, and
# the download of the Kafka jars. Source it; it defines variables and functions only.

# --- versions: the one place to change them --------------------------------
KAFKA_VERSION=4.1.1          # org.apache.kafka:kafka_2.13 + kafka-tools (stack/kafka/pom.xml)
APICURIO_VERSION=3.0.9       # io.apicurio:apicurio-registry-app:<v>:tar.gz:all (3.1+ needs Java 21)
APICURIO_SERDE_VERSION=3.1.7 # io.apicurio:apicurio-registry-avro-serde-kafka, Avro console tools (Java 17; 3.0.x is not on Central)
# PostgreSQL: Debian's package, newest /usr/lib/postgresql/<major> installed.

# --- ports (override by environment) --------------------------------------
STACK_PG_PORT=${STACK_PG_PORT:-5432}
STACK_KAFKA_PORT=${STACK_KAFKA_PORT:-9092}
STACK_KAFKA_CONTROLLER_PORT=${STACK_KAFKA_CONTROLLER_PORT:-9093}
STACK_REGISTRY_PORT=${STACK_REGISTRY_PORT:-8081}
# Kafka's second listener PROXIED for network-fault tests: bound on the BIND port, advertised on
# the other one, where nothing listens unless a test runs a TCP proxy forwarding to the BIND port.
STACK_KAFKA_PROXIED_PORT=${STACK_KAFKA_PROXIED_PORT:-9094}
STACK_KAFKA_PROXIED_BIND_PORT=${STACK_KAFKA_PROXIED_BIND_PORT:-9095}

# --- paths: all state lives in the git-ignored .stack/ at the repo root ---
STACK_SRC=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd -P)   # stack/
REPO_ROOT=$(dirname "$STACK_SRC")
STACK_HOME=${STACK_HOME:-$REPO_ROOT/.stack}
# Absolute and normalized (no symlinks resolved): server processes are recognized by paths under
# it in their command lines, so two stacks with different STACK_HOMEs never mistake each other.
STACK_HOME=$(realpath -ms -- "$STACK_HOME")
CACHE_DIR=$STACK_HOME/cache
DATA_DIR=$STACK_HOME/data
LOG_DIR=$STACK_HOME/log
RUN_DIR=$STACK_HOME/run

KAFKA_LIBS=$CACHE_DIR/kafka-$KAFKA_VERSION/libs
APICURIO_HOME=$CACHE_DIR/apicurio-registry-app-$APICURIO_VERSION
APICURIO_JAR=$APICURIO_HOME/apicurio-registry-app-$APICURIO_VERSION-runner.jar

say() { printf '%s\n' "$*" >&2; }
die() { printf 'stack: error: %s\n' "$*" >&2; exit 1; }

# Run mvn in batch mode; show its output only when it fails.
mvn_quiet() {
    local out
    if ! out=$(mvn -B -q -Dstyle.color=never "$@" 2>&1 </dev/null); then
        printf '%s\n' "$out" >&2
        return 1
    fi
}

# Fetch the Kafka jars into the cache unless a complete copy is there.
# A marker file is written last, so an interrupted download is redone.
ensure_kafka_jars() {
    [[ -f $KAFKA_LIBS/.complete ]] && return 0
    command -v mvn >/dev/null || die "Kafka jars missing in $KAFKA_LIBS and no mvn to fetch them (install Maven, then run: make stack-up)"
    say "fetching Kafka $KAFKA_VERSION jars from Maven Central into $KAFKA_LIBS ..."
    rm -rf "$KAFKA_LIBS"
    mkdir -p "$KAFKA_LIBS"
    mvn_quiet -f "$STACK_SRC/kafka/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
        dependency:copy-dependencies -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime \
        || die "mvn could not fetch the Kafka jars (see the output above)"
    touch "$KAFKA_LIBS/.complete"
}

ensure_apicurio() {
    [[ -f $APICURIO_HOME/.complete ]] && return 0
    command -v mvn >/dev/null || die "Apicurio Registry missing in $APICURIO_HOME and no mvn to fetch it"
    say "fetching Apicurio Registry $APICURIO_VERSION from Maven Central ..."
    local tmp=$CACHE_DIR/apicurio-download
    rm -rf "$tmp" "$APICURIO_HOME"
    mkdir -p "$tmp"
    mvn_quiet dependency:copy -Dartifact="io.apicurio:apicurio-registry-app:$APICURIO_VERSION:tar.gz:all" \
        -DoutputDirectory="$tmp" || die "mvn could not fetch Apicurio Registry (see the output above)"
    mkdir -p "$APICURIO_HOME"
    tar -xzf "$tmp"/apicurio-registry-app-*.tar.gz -C "$APICURIO_HOME"
    # the tarball may wrap everything in one top-level folder: flatten it
    if [[ ! -f $APICURIO_JAR ]]; then
        local jar
        jar=$(find "$APICURIO_HOME" -name "apicurio-registry-app-$APICURIO_VERSION-runner.jar" | head -1)
        [[ -n $jar ]] || die "no runner jar in the Apicurio tarball ($tmp)"
        local top
        top=$(dirname "$jar")
        (shopt -s dotglob && mv "$top"/* "$APICURIO_HOME"/)
    fi
    rm -rf "$tmp"
    touch "$APICURIO_HOME/.complete"
}
