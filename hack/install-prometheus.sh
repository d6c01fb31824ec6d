#!/usr/bin/env bash
# Installs promtool and the Prometheus server from the distribution's
# `prometheus` package WITHOUT installing or starting the system service:
# the .deb is fetched with `apt-get download` and unpacked with `dpkg-deb -x`
# into $HOTLINE_CACHE_DIR/prometheus (default ~/.cache/hotline-operator/prometheus).
# Idempotent: does nothing when the binaries are already there. Runs
# `apt-get update` only when apt does not know the package yet.
# Prints the path of promtool on stdout (the server is next to it: prometheus).
set -euo pipefail
CACHE_DIR=${HOTLINE_CACHE_DIR:-$HOME/.cache/hotline-operator}
DEST=$CACHE_DIR/prometheus
BIN=$DEST/usr/bin
START=$(date +%s)
step() { echo "[prometheus +$(( $(date +%s) - START ))s] $*" >&2; }
run() {
  local rc=0
  "$@" || rc=$?
  if (( rc != 0 )); then
    echo "hack/install-prometheus.sh: FAILED (exit $rc): $*" >&2
    exit "$rc"
  fi
}

if [[ -x $BIN/promtool && -x $BIN/prometheus ]] && "$BIN/promtool" --version >/dev/null 2>&1; then
  step "already installed: $("$BIN/prometheus" --version 2>&1 | head -n1)"
  echo "$BIN/promtool"
  exit 0
fi

SUDO=()
if (( EUID != 0 )); then SUDO=(sudo); fi
candidate() { apt-cache policy prometheus 2>/dev/null | sed -n 's/^ *Candidate: *//p'; }
VERSION=$(candidate)
if [[ -z $VERSION || $VERSION == "(none)" ]]; then
  step "apt does not know package prometheus yet: apt-get update"
  run "${SUDO[@]}" apt-get update -q >&2
  VERSION=$(candidate)
fi
[[ -n $VERSION && $VERSION != "(none)" ]] || { echo "hack/install-prometheus.sh: no installable candidate for package prometheus" >&2; exit 1; }

step "downloading prometheus $VERSION (.deb only, no service)"
TMP=$(mktemp -d); trap 'rm -rf "$TMP"' EXIT
# apt-get download writes into the current directory. As root, apt would drop
# to the _apt user and warn that it cannot write into our private temp dir.
APT_OPTS=()
if (( EUID == 0 )); then APT_OPTS=(-o APT::Sandbox::User=root); fi
# stdout is reserved for the promtool path.
( cd "$TMP" && run apt-get download -q "${APT_OPTS[@]}" prometheus ) >&2
DEB=$(ls "$TMP"/prometheus_*.deb)
step "unpacking $(basename "$DEB") into $DEST"
rm -rf "$DEST.tmp"; mkdir -p "$DEST.tmp"
run dpkg-deb -x "$DEB" "$DEST.tmp"
rm -rf "$DEST"; mv "$DEST.tmp" "$DEST"
run "$BIN/promtool" --version >/dev/null
step "installed: $("$BIN/prometheus" --version 2>&1 | head -n1)"
echo "$BIN/promtool"
