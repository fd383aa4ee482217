#!/usr/bin/env bash
# Run a command with a Docker engine at hand: docker/engine.sh CMD [ARGS...]
# (`make test`, `make images` and `make run RUNNER=docker` run through it).
#   - no engine installed: installs Debian's docker.io with apt (sudo when not root);
#   - no daemon answering: starts dockerd (log: build/dockerd.log) and stops it when CMD ends;
#     a daemon that was already running is left alone;
#   - neither possible: CMD still runs, with FLYWHEEL_NO_DOCKER set to the reason, so that the
#     container tests skip saying why instead of failing.
# CMD also gets FLYWHEEL_ENGINE_SECONDS: what making the engine available cost in this run.
set -uo pipefail

cd "$(dirname "$0")/.."
SUDO=()
[ "$(id -u)" = 0 ] || SUDO=(sudo -n)
LOG=build/dockerd.log
started_at=$SECONDS
dockerd_pid=""

daemon_answers() { docker info --format '{{.ServerVersion}}' >/dev/null 2>&1; }

apt_install() {
  # apt may be locked by another install for a moment: retry a few times.
  for attempt in 1 2 3 4 5; do
    "${SUDO[@]}" apt-get update -qq >/dev/null 2>&1 &&
      "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
        >/dev/null 2>&1 && return 0
    [ "$attempt" = 5 ] || sleep 15
  done
  return 1
}

stop_started_daemon() {
  [ -n "$dockerd_pid" ] || return 0
  echo "docker engine: stopping the dockerd this run started"
  "${SUDO[@]}" kill -TERM "$dockerd_pid" 2>/dev/null
  for _ in $(seq 60); do kill -0 "$dockerd_pid" 2>/dev/null || return 0; sleep 0.5; done
  "${SUDO[@]}" kill -KILL "$dockerd_pid" 2>/dev/null
}

ensure_engine() {
  daemon_answers && return 0
  if [ ${#SUDO[@]} -gt 0 ] && ! sudo -n true 2>/dev/null; then
    reason="no daemon answers, and installing or starting one needs root (sudo is missing or asks for a password)"
    return 1
  fi
  if ! command -v dockerd >/dev/null; then
    echo "docker engine: none installed; installing Debian's docker.io"
    apt_install docker.io || { reason="docker.io could not be installed (apt-get as root, or sudo without a password)"; return 1; }
  fi
  daemon_answers && return 0
  mkdir -p build
  echo "docker engine: no daemon answers; starting dockerd (log: $LOG)"
  # --group: the socket belongs to the caller's group, so a non-root caller can use it.
  "${SUDO[@]}" dockerd --group "$(id -gn)" >"$LOG" 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 120); do
    daemon_answers && return 0
    kill -0 "$dockerd_pid" 2>/dev/null || break
    sleep 0.5
  done
  echo "dockerd did not start; last lines of $LOG:"; tail -n 5 "$LOG" | sed 's/^/  /'
  "${SUDO[@]}" kill -KILL "$dockerd_pid" 2>/dev/null; dockerd_pid=""
  reason="dockerd did not start (see $LOG)"
  return 1
}

trap stop_started_daemon EXIT
trap 'exit 130' INT TERM
reason=""
if ensure_engine; then
  echo "docker engine: $(docker info --format 'Docker {{.ServerVersion}}, {{.Driver}}') ($((SECONDS - started_at)) s)"
else
  export FLYWHEEL_NO_DOCKER="no Docker engine: $reason"
  echo "docker engine: unavailable, container steps are skipped ($reason)"
fi
export FLYWHEEL_ENGINE_SECONDS=$((SECONDS - started_at))
"$@"
