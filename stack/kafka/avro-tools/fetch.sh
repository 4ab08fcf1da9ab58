# shellcheck shell=bash
# Sourced by stack/bin/kafka-run-class after stack/common.sh: fetches Kafka's console tools with
# Apicurio's Avro serde (pom.xml beside this file) and compiles the two classes that plug into
# them (src/: a ConsoleConsumer formatter and a ConsoleProducer reader) into one cached folder.

AVRO_TOOLS_SRC=$STACK_SRC/kafka/avro-tools
AVRO_TOOLS_LIBS=$CACHE_DIR/kafka-avro-tools-$KAFKA_VERSION-$APICURIO_SERDE_VERSION/libs

# A marker named after a hash of the sources: editing a .java file or the pom rebuilds the folder.
ensure_avro_tools() {
    local stamp
    stamp=$(cat "$AVRO_TOOLS_SRC/pom.xml" "$AVRO_TOOLS_SRC"/src/io/allocation/tools/*.java | sha256sum | cut -c1-16)
    [[ -f $AVRO_TOOLS_LIBS/.complete-$stamp ]] && return 0
    command -v mvn >/dev/null || die "the Avro console tools' jars are missing ($AVRO_TOOLS_LIBS) and no mvn to fetch them (install Maven)"
    command -v javac >/dev/null || die "javac not found: the Avro console tools compile two classes once (apt-get install openjdk-17-jdk-headless)"
    mkdir -p "$CACHE_DIR"
    # Two tools started at once on a fresh machine: one fetches, the other waits for it.
    local lock
    exec {lock}>"$CACHE_DIR/.avro-tools.lock"
    flock "$lock"
    if [[ ! -f $AVRO_TOOLS_LIBS/.complete-$stamp ]]; then
        say "fetching Kafka $KAFKA_VERSION tools and Apicurio's Avro serde $APICURIO_SERDE_VERSION into $AVRO_TOOLS_LIBS ..."
        rm -rf "$AVRO_TOOLS_LIBS"
        mkdir -p "$AVRO_TOOLS_LIBS"
        mvn_quiet -f "$AVRO_TOOLS_SRC/pom.xml" -Dkafka.version="$KAFKA_VERSION" \
            -Dapicurio.serde.version="$APICURIO_SERDE_VERSION" \
            dependency:copy-dependencies -DoutputDirectory="$AVRO_TOOLS_LIBS" -DincludeScope=runtime \
            || die "mvn could not fetch the Avro console tools' jars (see the output above)"
        local classes
        classes=$(mktemp -d)
        javac -nowarn -d "$classes" -cp "$AVRO_TOOLS_LIBS/*" "$AVRO_TOOLS_SRC"/src/io/allocation/tools/*.java \
            || die "javac could not compile $AVRO_TOOLS_SRC/src (see the output above)"
        jar cf "$AVRO_TOOLS_LIBS/allocation-avro-tools.jar" -C "$classes" .
        rm -rf "$classes"
        touch "$AVRO_TOOLS_LIBS/.complete-$stamp"
    fi
    exec {lock}>&-
}
