#!/usr/bin/env bash
# `make observe` / `make observe-down`: Debian's Prometheus, natively, with observability/prometheus.yml,
# scraping the processes of `make run` on this host. Data, log and pid file in .stack/prometheus/.
set -euo pipefail
cd "$(dirname "$0")/.."

PROMETHEUS=${PROMETHEUS:-/usr/bin/prometheus}
LISTEN=${PROMETHEUS_LISTEN:-127.0.0.1:9090}
DIR=.stack/prometheus
PID_FILE=$DIR/prometheus.pid
LOG=$DIR/prometheus.log
START_TIMEOUT_S=30
STOP_TIMEOUT_S=30

running() { [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

answers() { curl -fsS -o /dev/null --max-time 2 "http://$LISTEN/$1" 2>/dev/null; }

listening() { (exec 3<>"/dev/tcp/${LISTEN%:*}/${LISTEN##*:}") 2>/dev/null; }

up() {
    if running; then
        echo "prometheus already runs (pid $(cat "$PID_FILE")): http://$LISTEN"
        return 0
    fi
    if listening; then
        # Debian's package enables its own service on :9090 where systemd runs.
        echo "something else listens on $LISTEN (Debian's prometheus service?" \
            "systemctl disable --now prometheus), or set PROMETHEUS_LISTEN" >&2
        return 1
    fi
    mkdir -p "$DIR/data"
    nohup "$PROMETHEUS" \
        --config.file=observability/prometheus.yml \
        --storage.tsdb.path="$DIR/data" \
        --storage.tsdb.retention.time=7d \
        --web.listen-address="$LISTEN" \
        >>"$LOG" 2>&1 &
    echo $! >"$PID_FILE"
    local deadline=$((SECONDS + START_TIMEOUT_S))
    until answers -/ready; do
        if ! running || ((SECONDS > deadline)); then
            echo "prometheus did not become ready within ${START_TIMEOUT_S}s; its log ($LOG):" >&2
            tail -n 20 "$LOG" >&2
            down >/dev/null
            return 1
        fi
        sleep 0.2
    done
    # Debian's build serves the classic web UI only.
    echo "prometheus: http://$LISTEN/classic/graph, /classic/targets, /classic/alerts"
    echo "  pid $(cat "$PID_FILE"), log $LOG; stop it with make observe-down"
}

down() {
    if ! running; then
        rm -f "$PID_FILE"
        echo "prometheus is not running"
        return 0
    fi
    local pid deadline=$((SECONDS + STOP_TIMEOUT_S))
    pid=$(cat "$PID_FILE")
    kill -TERM "$pid"
    while kill -0 "$pid" 2>/dev/null; do
        if ((SECONDS > deadline)); then
            echo "prometheus (pid $pid) did not stop within ${STOP_TIMEOUT_S}s: SIGKILL" >&2
            kill -KILL "$pid"
        fi
        sleep 0.2
    done
    rm -f "$PID_FILE"
    echo "prometheus stopped"
}

case "${1:-}" in
    up) up ;;
    down) down ;;
    *) echo "usage: $0 up|down" >&2; exit 2 ;;
esac
