#!/usr/bin/env bash
# A throwaway PostgreSQL server for Optuna studies shared by many workers (and for an MLflow tracking backend).
#
#   bash scripts/postgres.sh start DIR [PORT]   # prints the study storage URL, e.g. postgresql+psycopg://xstilts@127.0.0.1:54329/optuna
#   bash scripts/postgres.sh stop DIR
#
# `start` installs the server with apt-get when it is missing (as root; Debian's postgresql package), creates a cluster
# in DIR on first use with the databases `optuna` and `mlflow`, and starts it on 127.0.0.1 only, trusting connections
# from this machine (no password: a throwaway server for one machine's tests and studies; for other machines, put it
# behind a password and listen_addresses of your own). Run as root, the cluster belongs to the postgres user, since
# the server refuses to run as root; DIR's parent must then be readable by that user (e.g. under /tmp).
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [PORT] | stop DIR" >&2
  exit 2
}

server_bin() {
  ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1
}

install_server() {
  if [ -n "$(server_bin)" ]; then
    return
  fi
  if [ "$(id -u)" != 0 ]; then
    echo "$0: the PostgreSQL server is not installed; install it as root (apt-get install postgresql)" >&2
    exit 1
  fi
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null
}

as_owner() {
  if [ "$(id -u)" = 0 ]; then
    runuser -u postgres -- "$@"
  else
    "$@"
  fi
}

[ $# -ge 2 ] || usage
command=$1
dir=$(realpath -m "$2")
port=${3:-54329}
case "$command" in
  start)
    install_server
    bin=$(server_bin)
    mkdir -p "$dir"
    if [ "$(id -u)" = 0 ]; then
      chown postgres: "$dir"
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$bin/initdb" -D "$dir/data" -U xstilts --auth=trust -E UTF8 >"$dir/initdb.log"
    fi
    if ! as_owner "$bin/pg_ctl" -D "$dir/data" status >/dev/null; then
      as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w \
        -o "-c listen_addresses=127.0.0.1 -p $port -k $dir" start >/dev/null
    fi
    for database in optuna mlflow; do
      if ! "$bin/psql" -h 127.0.0.1 -p "$port" -U xstilts -d postgres -tAc \
          "SELECT 1 FROM pg_database WHERE datname = '$database'" | grep -q 1; then
        "$bin/createdb" -h 127.0.0.1 -p "$port" -U xstilts "$database"
      fi
    done
    echo "postgresql+psycopg://xstilts@127.0.0.1:$port/optuna"
    ;;
  stop)
    bin=$(server_bin)
    as_owner "$bin/pg_ctl" -D "$dir/data" -m fast stop >/dev/null
    ;;
  *)
    usage
    ;;
esac
