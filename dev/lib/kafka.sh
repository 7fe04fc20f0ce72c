# shellcheck shell=bash disable=SC2034,SC2153 # globals for the scripts that source this
# dev/lib/kafka.sh — what dev/kafka and dev/kafka-secure share on top of service.sh: a
# single-node KRaft broker (combined broker+controller) from the jars of dev/kafka-pom.xml,
# its common settings, log4j2 configs, data dir formatting and the readiness check.
#
# The script calls kafka_init after svc_init and sets PORT, then defines:
#   LISTENER           the client listener's name in server.properties (PLAINTEXT, SASL_SSL)
#   LIBS_CP            the classpath holding the broker and its CLI tools
#   PROBE_PROPS        client properties for the readiness check (TopicCommand --list)
#   FORMAT_ARGS        (array) extra StorageTool format arguments
#   kafka_stamp        prints what data/ must have been formatted for; another stamp = reformat

# kafka_init OPTS_VAR POM JVM_OPTION...: after svc_init and with PORT set. The broker runs with
# JVM_OPTION... (its memory) and common options, then the extra ones in $OPTS_VAR.
kafka_init() {
    local opts_var=$1 pom=$2 v
    shift 2
    HOST=127.0.0.1
    SECOND_PORT=$((PORT + 1)) # the KRaft controller
    CPORT=$SECOND_PORT
    BOOTSTRAP="$HOST:$PORT"
    DATA="$STATE/data"
    PROPS="$STATE/server.properties"
    LOG4J="$STATE/log4j2.xml"
    TOOLS_LOG4J="$STATE/tools-log4j2.xml"
    CLUSTER_ID_FILE="$STATE/cluster.id"
    DATA_STAMP="$STATE/data.stamp" # what data/ was formatted for; a mismatch means wipe + reformat
    PROBE_LOG="$STATE/readiness.log"
    MARKER=$PROPS # the broker runs `kafka.Kafka <this state dir>/server.properties`
    FORMAT_ARGS=()
    FORMATTED_NOW=0
    v=$(sed -n 's:.*<kafka\.version>[[:space:]]*\([^<[:space:]]*\)[[:space:]]*</kafka\.version>.*:\1:p' "$pom" | head -n1)
    [[ -n $v ]] || die "cannot read <kafka.version> from $pom"
    KAFKA_VERSION=$v

    local -a extra
    read -r -a extra <<<"${!opts_var:-}" # word-split on purpose
    BROKER_JVM_OPTS=(
        "$@" -XX:+UseSerialGC -XX:+ExitOnOutOfMemoryError
        -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$LOG4J"
        "${extra[@]}"
    )
    # Short-lived CLI JVMs: start fast, log only warnings (to stderr).
    TOOL_JVM_OPTS=(
        -Xmx256m -XX:+UseSerialGC -XX:TieredStopAtLevel=1
        -Djava.awt.headless=true
        "-Dlog4j2.configurationFile=$TOOLS_LOG4J"
    )
}

svc_running_port() {
    sed -n "s|^listeners=$LISTENER://$HOST:\([0-9]*\),.*|\1|p" "$PROPS" 2>/dev/null | head -n1
}

svc_up() { svc_port_open "$HOST" "$1"; }

# svc_probe SECONDS: a real client round trip (Admin listTopics) works.
svc_probe() {
    svc_port_open "$HOST" "$PORT" || return 1
    timeout "$1" "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIBS_CP" org.apache.kafka.tools.TopicCommand \
        --bootstrap-server "$BOOTSTRAP" --command-config "$PROBE_PROPS" --list \
        >/dev/null 2>"$PROBE_LOG"
}

svc_spawn() {
    say "starting broker: $LISTENER $BOOTSTRAP, controller $HOST:$CPORT; log: $LOGFILE"
    svc_launch "$STATE" "$JAVA" "${BROKER_JVM_OPTS[@]}" -cp "$LIBS_CP" kafka.Kafka "$PROPS"
}

# kafka_common_props: the server.properties lines both brokers share, after their listeners.
kafka_common_props() {
    cat <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=$HOST:$CPORT
controller.listener.names=CONTROLLER
log.dirs=$DATA

# single node: every internal topic has one replica
num.partitions=1
default.replication.factor=1
min.insync.replicas=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
share.coordinator.state.topic.replication.factor=1
share.coordinator.state.topic.min.isr=1
auto.create.topics.enable=false
delete.topic.enable=true

# small and quick for tests
group.initial.rebalance.delay.ms=0
offsets.topic.num.partitions=4
transaction.state.log.num.partitions=4
share.coordinator.state.topic.num.partitions=4
num.network.threads=2
num.recovery.threads.per.data.dir=1
log.cleaner.threads=1
log.cleaner.backoff.ms=2000
log.retention.hours=24
log.segment.bytes=67108864
EOF
}

# kafka_write_log4j: the broker logs to stdout (so to the log file), CLI tools warn to stderr.
kafka_write_log4j() {
    cat >"$LOG4J" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by $SVC: broker logs go to stdout, which $SVC sends to ${LOGFILE##*/}. -->
<Configuration status="WARN" name="tidemark-${SVC#*/}">
  <Appenders>
    <Console name="STDOUT" target="SYSTEM_OUT">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="INFO"><AppenderRef ref="STDOUT"/></Root>
    <Logger name="kafka.request.logger" level="WARN"/>
    <Logger name="kafka.authorizer.logger" level="WARN"/>
    <Logger name="org.apache.kafka.clients" level="WARN"/>
    <Logger name="org.apache.kafka.common.utils.AppInfoParser" level="WARN"/>
    <!-- the ~2000-line config dumps; server.properties is beside this file -->
    <Logger name="org.apache.kafka.common.config.AbstractConfig" level="WARN"/>
  </Loggers>
</Configuration>
EOF
    cat >"$TOOLS_LOG4J" <<EOF
<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by $SVC: for the Kafka CLI tools it runs, warnings only, to stderr. -->
<Configuration status="WARN" name="tidemark-${SVC#*/}-tools">
  <Appenders>
    <Console name="STDERR" target="SYSTEM_ERR">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </Console>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="STDERR"/></Root>
  </Loggers>
</Configuration>
EOF
}

# kafka_probe_timeouts: client properties for the readiness check: fail fast, the script retries.
kafka_probe_timeouts() {
    printf '%s\n' '# readiness check (TopicCommand --list): fail fast, retry from the script' \
        request.timeout.ms=5000 default.api.timeout.ms=8000
}

# kafka_ensure_formatted: data/ is formatted for $(kafka_stamp); sets FORMATTED_NOW=1 if it
# formatted it now.
kafka_ensure_formatted() {
    if [[ -f $DATA/meta.properties && -f $DATA_STAMP && "$(<"$DATA_STAMP")" == "$(kafka_stamp)" ]]; then
        return 0
    fi
    if [[ -e $DATA ]]; then
        say "data dir was formatted for another Kafka version, ports or credentials (or not at all); wiping $DATA"
    fi
    kafka_format
}

# kafka_random_cluster_id: 16 random bytes, base64url without padding, like Uuid.randomUuid()
# (made here to save a JVM start).
kafka_random_cluster_id() {
    local id
    while :; do
        id=$(head -c 16 /dev/urandom | base64 | tr '+/' '-_' | tr -d '=\n')
        [[ $id =~ ^[A-Za-z0-9_][A-Za-z0-9_-]{21}$ && $id != AAAAAAAAAAAAAAAAAAAAA[AQ] ]] && break
    done
    printf '%s\n' "$id"
}

kafka_format() {
    local cid
    rm -rf "$DATA" "$DATA_STAMP"
    [[ -s $CLUSTER_ID_FILE ]] || kafka_random_cluster_id >"$CLUSTER_ID_FILE"
    cid=$(<"$CLUSTER_ID_FILE")
    say "formatting $DATA (cluster id $cid) ..."
    if ! "$JAVA" "${TOOL_JVM_OPTS[@]}" -cp "$LIBS_CP" kafka.tools.StorageTool format \
        --standalone --cluster-id "$cid" --config "$PROPS" "${FORMAT_ARGS[@]}" \
        >"$STATE/format.log" 2>&1; then
        cat "$STATE/format.log" >&2
        die "kafka.tools.StorageTool format failed (see above / $STATE/format.log)"
    fi
    kafka_stamp >"$DATA_STAMP"
    FORMATTED_NOW=1
}

# svc_recover: a broker that died on a data dir it did not just format (corrupt, older format,
# ...) gets an empty one, once.
svc_recover() {
    ((FORMATTED_NOW == 0)) || return 1
    svc_show_log_tail
    say "broker exited on the existing data dir; wiping it and retrying once"
    kafka_format
}
