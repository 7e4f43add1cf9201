#!/usr/bin/env bash
# Build the sandbox's binaries offline from the Go module proxy, cached by version.
#
#   sandbox/build.sh            build what is missing, print the bin directory
#   MESHID_CACHE_DIR=DIR ...    cache elsewhere (default ~/.cache/meshid)
#
# Each component lands in $CACHE/bin/<component>-<version>/ and is rebuilt only when missing, so a warm
# call returns in well under a second. A lock keeps two concurrent builds from racing.
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=versions.env
source "$here/versions.env"

cache=${MESHID_CACHE_DIR:-$HOME/.cache/meshid}
bin="$cache/bin"
work="$cache/build"
mkdir -p "$bin" "$work"

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false
command -v go >/dev/null || { echo "sandbox build: the Go toolchain is missing (need go >= 1.26 on PATH)" >&2; exit 3; }

log() { printf '[sandbox build %s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

# build_once DIR BINARY... -- COMMAND: run COMMAND (which writes into DIR.tmp) unless DIR holds every BINARY.
build_once() {
  local dest=$1; shift
  local names=()
  while [ "$1" != "--" ]; do names+=("$1"); shift; done
  shift
  local n missing=0
  for n in "${names[@]}"; do [ -x "$dest/$n" ] || missing=1; done
  [ "$missing" = 0 ] && return 0
  rm -rf "$dest.tmp" && mkdir -p "$dest.tmp"
  local t0=$SECONDS
  log "building ${names[*]} into $dest"
  "$@" "$dest.tmp"
  for n in "${names[@]}"; do [ -x "$dest.tmp/$n" ] || { log "expected $n was not built"; exit 1; }; done
  rm -rf "$dest" && mv "$dest.tmp" "$dest"
  log "built ${names[*]} in $((SECONDS - t0)) s"
}

build_kubernetes() {
  local out=$1 v=$KUBERNETES_VERSION
  local minor=${v#v1.}; minor=${minor%%.*}
  local mod="$work/kubernetes-$v"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  go mod init meshid.local/sandbox/kubernetes >/dev/null 2>&1
  # Replace every staging module exactly as upstream's go.mod lists them, with the matching v0.<minor> release.
  local gomod
  gomod=$(go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')
  local staging
  staging=$(sed -n 's#^[[:space:]]*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\1#p' "$gomod")
  [ -n "$staging" ] || { log "no staging replaces found in $gomod"; exit 1; }
  local m
  for m in $staging; do go mod edit -replace "$m=$m@v0.$minor.${v##*.}"; done
  local cmds=(k8s.io/kubernetes/cmd/kube-apiserver k8s.io/kubernetes/cmd/kube-controller-manager k8s.io/kubernetes/cmd/kube-scheduler)
  local c tools=()
  for c in "${cmds[@]}"; do tools+=("$c@$v"); done
  go get -tool "${tools[@]}"
  local date; date=$(date -u +%Y-%m-%dT%H:%M:%SZ)
  local ld="" pkg
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $pkg.gitVersion=$v -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ld+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$date"
  done
  go build -trimpath -ldflags "-s -w$ld" -o "$out/" "${cmds[@]}"
}

build_etcd() {
  local out=$1 mod="$work/etcd-$ETCD_VERSION"
  rm -rf "$mod" && mkdir -p "$mod" && cd "$mod"
  go mod init meshid.local/sandbox/etcd >/dev/null 2>&1
  go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION"
  go build -trimpath -ldflags "-s -w" -o "$out/etcd" go.etcd.io/etcd/server/v3
}

build_kwok() {
  GOBIN=$1 go install -trimpath -ldflags "-s -w" \
    "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION" "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
}

# kwok's default Stages, as kwokctl would write them into a cluster's config (node-initialize, node-heartbeat-with-lease
# for its default lease, pod-ready, pod-complete, pod-delete), copied from the kwok module the binaries were built from.
# The sandbox's config replaces kwokctl's defaults with these plus one hold on pod-ready (sandbox/kwokstages.py).
copy_kwok_stages() {
  local out=$1 dir
  dir=$(go mod download -json "sigs.k8s.io/kwok@$KWOK_VERSION" | sed -n 's/.*"Dir": "\(.*\)",/\1/p')
  [ -d "$dir/kustomize/stage" ] || { log "no kustomize/stage in the kwok module at $dir"; exit 1; }
  cp "$dir"/kustomize/stage/node/fast/node-initialize.yaml \
     "$dir"/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml \
     "$dir"/kustomize/stage/pod/fast/pod-{ready,complete,delete}.yaml "$out/"
}

build_helm() {
  local major=${HELM_VERSION%%.*}
  GOBIN=$1 go install -trimpath \
    -ldflags "-s -w -X helm.sh/helm/$major/internal/version.version=$HELM_VERSION" \
    "helm.sh/helm/$major/cmd/helm@$HELM_VERSION"
}

exec 9>"$cache/build.lock"
flock 9
build_once "$bin/kubernetes-$KUBERNETES_VERSION" kube-apiserver kube-controller-manager kube-scheduler -- build_kubernetes
build_once "$bin/etcd-$ETCD_VERSION" etcd -- build_etcd
build_once "$bin/kwok-$KWOK_VERSION" kwok kwokctl -- build_kwok
build_once "$bin/helm-$HELM_VERSION" helm -- build_helm
[ -s "$bin/kwok-stages-$KWOK_VERSION/pod-ready.yaml" ] || {
  rm -rf "$bin/kwok-stages-$KWOK_VERSION.tmp" && mkdir -p "$bin/kwok-stages-$KWOK_VERSION.tmp"
  copy_kwok_stages "$bin/kwok-stages-$KWOK_VERSION.tmp"
  rm -rf "$bin/kwok-stages-$KWOK_VERSION" && mv "$bin/kwok-stages-$KWOK_VERSION.tmp" "$bin/kwok-stages-$KWOK_VERSION"
  log "copied kwok's default stages into $bin/kwok-stages-$KWOK_VERSION"
}

# One folder of links so that kwokctl, helm and kubectl users need a single PATH entry.
link="$bin/current"
mkdir -p "$link"
ln -sfn "$bin/kubernetes-$KUBERNETES_VERSION"/kube-{apiserver,controller-manager,scheduler} "$link/"
ln -sfn "$bin/etcd-$ETCD_VERSION/etcd" "$bin/kwok-$KWOK_VERSION"/kwok{,ctl} "$bin/helm-$HELM_VERSION/helm" "$link/"
ln -sfn "$bin/kwok-stages-$KWOK_VERSION" "$link/kwok-stages"
echo "$link"
