#!/usr/bin/env bash
# An MLflow tracking server on PostgreSQL, for grids with --workers > 1 and studies shared by several machines.
#
#   bash scripts/tracking_server.sh start DIR [PORT [DB_PORT]]   # prints the MLFLOW_TRACKING_URI, e.g. http://127.0.0.1:5000
#   bash scripts/tracking_server.sh stop DIR
#
# The backend store is the `mlflow` database of the PostgreSQL cluster that scripts/postgres.sh starts in DIR/postgres
# (Debian's packages, bound to 127.0.0.1); artifacts go to DIR/artifacts, served through the server. The server
# listens on 127.0.0.1 only; for a server shared by several machines, see docs/scale-out.md (a password-protected
# database, --host 0.0.0.0 behind your firewall).
set -euo pipefail
cd "$(dirname "$0")/.."

[ $# -ge 2 ] || { echo "usage: $0 start DIR [PORT [DB_PORT]] | stop DIR" >&2; exit 2; }
command=$1
dir=$(realpath -m "$2")
port=${3:-5000}
db_port=${4:-$((port + 50000))}  # one database per server: two servers on one machine do not share a cluster port
case "$command" in
  start)
    optuna_url=$(bash scripts/postgres.sh start "$dir/postgres" "$db_port")
    backend=${optuna_url%/optuna}/mlflow
    mkdir -p "$dir/artifacts"
    # No server-side job runners (GenAI scorers, unused here): they take seconds to start and outlive a stop.
    MLFLOW_SERVER_ENABLE_JOB_EXECUTION=false setsid .venv/bin/mlflow server --backend-store-uri "$backend" --artifacts-destination "$dir/artifacts" \
      --host 127.0.0.1 --port "$port" >"$dir/server.log" 2>&1 < /dev/null &
    echo $! >"$dir/server.pid"
    for _ in $(seq 60); do
      if curl -sf "http://127.0.0.1:$port/health" >/dev/null; then
        echo "http://127.0.0.1:$port"
        exit 0
      fi
      sleep 1
    done
    echo "$0: the tracking server did not answer within 60 s; see $dir/server.log" >&2
    kill -- "-$(cat "$dir/server.pid")" 2>/dev/null || true
    bash scripts/postgres.sh stop "$dir/postgres"
    exit 1
    ;;
  stop)
    if [ -f "$dir/server.pid" ]; then
      kill -- "-$(cat "$dir/server.pid")" 2>/dev/null || true
      rm -f "$dir/server.pid"
    fi
    bash scripts/postgres.sh stop "$dir/postgres"
    ;;
  *)
    echo "usage: $0 start DIR [PORT [DB_PORT]] | stop DIR" >&2
    exit 2
    ;;
esac
