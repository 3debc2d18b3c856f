#!/usr/bin/env bash
# Builds the local control plane from pinned Go modules (hack/gomod/*) and caches the binaries under
# ~/.cache/elastic-training/bin/<name>-<version>/. A cached binary is reused; delete the folder to rebuild.
# Prints the bin folder (one line per component) on stdout; progress goes to stderr.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${ELASTIC_TRAINING_CACHE:-$HOME/.cache/elastic-training}"
export GOFLAGS="${GOFLAGS:--mod=mod}" CGO_ENABLED=0 GOTOOLCHAIN=local
export GOCACHE="${GOCACHE:-$cache/go-build}"

log() { echo "[build-controlplane] $*" >&2; }

build() {  # build NAME VERSION MODULE_DIR LDFLAGS PKG...
  local name=$1 version=$2 moddir=$3 ldflags=$4; shift 4
  local out="$cache/bin/$name-$version"
  if [[ -f "$out/.complete" ]]; then log "$name $version: cached in $out"; echo "$out"; return; fi
  log "$name $version: building $* (this takes a while on 2 cores)"
  rm -rf "$out.tmp" && mkdir -p "$out.tmp"
  local dest="$out.tmp/"
  [[ $# -eq 1 ]] && dest="$out.tmp/$name"   # one command: name the binary after the component (etcd's package is .../server/v3)
  (cd "$here/gomod/$moddir" && go build -trimpath -ldflags "-s -w $ldflags" -o "$dest" "$@")
  touch "$out.tmp/.complete"
  rm -rf "$out" && mv "$out.tmp" "$out"
  log "$name $version: done"
  echo "$out"
}

kv=$KUBERNETES_VERSION; minor=${kv#v1.}; minor=${minor%%.*}
kldflags=""
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kldflags+=" -X $pkg.gitVersion=$kv -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
  kldflags+=" -X $pkg.gitCommit=module-proxy -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

want="${*:-etcd kubernetes kwok helm}"
for c in $want; do
  case $c in
    etcd) build etcd "$ETCD_VERSION" etcd "" go.etcd.io/etcd/server/v3 ;;
    kubernetes) build kubernetes "$KUBERNETES_VERSION" kubernetes "$kldflags" \
      k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager \
      k8s.io/kubernetes/cmd/kube-scheduler k8s.io/kubernetes/cmd/kubectl ;;
    kwok) build kwok "$KWOK_VERSION" kwok "-X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v}" sigs.k8s.io/kwok/cmd/kwok ;;
    helm) build helm "$HELM_VERSION" helm "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm ;;
    *) echo "unknown component $c" >&2; exit 2 ;;
  esac
done
