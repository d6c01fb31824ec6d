#!/usr/bin/env bash
# Builds the local control plane's binaries from the Go module proxy, once per
# pinned version set, into $HOME/.cache/hotline-operator/bin/<versions>/.
# Idempotent: a binary already present is not rebuilt. Prints each step with
# the elapsed time; on failure it names the exact command that failed.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=hack/versions.env
source "$HERE/versions.env"
export GOTOOLCHAIN=local GOFLAGS=-mod=mod CGO_ENABLED=0
BIN_DIR=${HOTLINE_BIN_DIR:-$HOME/.cache/hotline-operator/bin/$K8S_VERSION-$ETCD_VERSION-$KWOK_VERSION-$HELM_VERSION}
START=$(date +%s)
step() { echo "[build +$(( $(date +%s) - START ))s] $*" >&2; }
run() {
  if ! "$@"; then
    echo "hack/build-binaries.sh: FAILED: $*" >&2
    exit 1
  fi
}
mkdir -p "$BIN_DIR"
have() { for b in "$@"; do [[ -x "$BIN_DIR/$b" ]] || return 1; done; }

K8S_MINOR=${K8S_VERSION#v1.}; K8S_MINOR=${K8S_MINOR%%.*}
if ! have kube-apiserver kube-controller-manager kube-scheduler kubectl; then
  step "building kube-apiserver, kube-controller-manager, kube-scheduler, kubectl $K8S_VERSION (cold: tens of minutes)"
  W=$(mktemp -d); trap 'rm -rf "$W"' EXIT
  (
    cd "$W"
    run go mod init local/k8sbins >/dev/null 2>&1
    run go mod download k8s.io/kubernetes@"$K8S_VERSION"
    MODFILE="$(go env GOMODCACHE)/cache/download/k8s.io/kubernetes/@v/$K8S_VERSION.mod"
    for m in $(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$MODFILE"); do
      run go mod edit -replace="$m=$m@$K8S_STAGING_VERSION"
    done
    cat > tools.go <<GO
//go:build tools
package tools
import (
	_ "k8s.io/kubernetes/cmd/kube-apiserver"
	_ "k8s.io/kubernetes/cmd/kube-controller-manager"
	_ "k8s.io/kubernetes/cmd/kube-scheduler"
	_ "k8s.io/kubernetes/cmd/kubectl"
)
GO
    run go get k8s.io/kubernetes@"$K8S_VERSION"
    run go mod tidy -e >/dev/null 2>&1 || true
    LDF="-s -w -X k8s.io/component-base/version.gitVersion=$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=$K8S_MINOR -X k8s.io/client-go/pkg/version.gitVersion=$K8S_VERSION -X k8s.io/client-go/pkg/version.gitMajor=1 -X k8s.io/client-go/pkg/version.gitMinor=$K8S_MINOR -X k8s.io/component-base/version.gitTreeState=clean"
    for c in kube-apiserver kube-controller-manager kube-scheduler kubectl; do
      step "go build $c"
      run go build -trimpath -ldflags "$LDF" -o "$BIN_DIR/$c.tmp" k8s.io/kubernetes/cmd/$c
      mv "$BIN_DIR/$c.tmp" "$BIN_DIR/$c"
    done
  )
fi
if ! have etcd; then
  step "building etcd $ETCD_VERSION"
  E=$(mktemp -d)
  (
    cd "$E"
    run go mod init local/etcdbin >/dev/null 2>&1
    run go get go.etcd.io/etcd/server/v3@"$ETCD_VERSION"
    run go build -trimpath -ldflags "-s -w" -o "$BIN_DIR/etcd.tmp" go.etcd.io/etcd/server/v3
    mv "$BIN_DIR/etcd.tmp" "$BIN_DIR/etcd"
  )
  rm -rf "$E"
fi
if ! have kwok kwokctl; then
  step "building kwok, kwokctl $KWOK_VERSION"
  run env GOBIN="$BIN_DIR" go install -trimpath -ldflags "-s -w" sigs.k8s.io/kwok/cmd/kwok@"$KWOK_VERSION" sigs.k8s.io/kwok/cmd/kwokctl@"$KWOK_VERSION"
fi
if ! have helm; then
  step "building helm $HELM_VERSION"
  run env GOBIN="$BIN_DIR" go install -trimpath -ldflags "-s -w" helm.sh/helm/v3/cmd/helm@"$HELM_VERSION"
fi
step "binaries ready in $BIN_DIR"
echo "$BIN_DIR"
