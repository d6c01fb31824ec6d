#!/usr/bin/env bash
# Measures how long the local cluster takes to bring a Deployment of $PODS
# (default 1000) pods to Ready on the kwok fake nodes, pods without a ready
# delay annotation, i.e. the control plane's own speed: API writes,
# ReplicaSet controller, scheduler, kwok. Then measures scaling back to 0.
# Prints the seconds to Ready on stdout (details on stderr).
# Uses only the built kubectl; runs `hack/cluster up` first (no-op when up).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
PODS=${PODS:-1000}
TIMEOUT=${TIMEOUT:-600}
"$HERE/cluster" up >&2
KUBECONFIG_PATH=$("$HERE/cluster" kubeconfig)
KUBECTL=("$("$HERE/cluster" bin-dir)/kubectl" --kubeconfig "$KUBECONFIG_PATH")
NS=measure-pods-$$
now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
run() {
  local rc=0
  "$@" || rc=$?
  if (( rc != 0 )); then echo "hack/measure-1000-pods.sh: FAILED (exit $rc): $*" >&2; exit "$rc"; fi
}
cleanup() { "${KUBECTL[@]}" delete namespace "$NS" --wait=false --ignore-not-found >/dev/null 2>&1 || true; }
trap cleanup EXIT

NODES=$("${KUBECTL[@]}" get nodes -l type=kwok --no-headers | wc -l)
run "${KUBECTL[@]}" create namespace "$NS" >/dev/null
until "${KUBECTL[@]}" -n "$NS" get serviceaccount default >/dev/null 2>&1; do sleep 0.1; done

T0=$(now)
run "${KUBECTL[@]}" -n "$NS" apply -f - >/dev/null <<YAML
apiVersion: apps/v1
kind: Deployment
metadata: {name: measure}
spec:
  replicas: $PODS
  selector: {matchLabels: {app: measure}}
  template:
    metadata: {labels: {app: measure}}
    spec:
      nodeSelector: {type: kwok}
      containers: [{name: app, image: measure:0}]
YAML
run "${KUBECTL[@]}" -n "$NS" wait deployment/measure --for=jsonpath='{.status.readyReplicas}'="$PODS" --timeout="${TIMEOUT}s" >/dev/null
READY=$(since "$T0")
echo "$PODS pods Ready on $NODES fake nodes in ${READY}s" >&2

T1=$(now)
run "${KUBECTL[@]}" -n "$NS" scale deployment/measure --replicas=0 >/dev/null
until [[ $("${KUBECTL[@]}" -n "$NS" get pods --no-headers 2>/dev/null | wc -l) -eq 0 ]]; do
  (( $(awk -v a="$T1" -v b="$(now)" 'BEGIN { print (b - a > '"$TIMEOUT"') }') == 0 )) || { echo "pods not gone after ${TIMEOUT}s" >&2; exit 1; }
  sleep 0.5
done
echo "scaled to 0, all $PODS pods deleted in $(since "$T1")s" >&2
echo "$READY"
