#!/usr/bin/env bash
# Builds the local cluster's binaries from the Go module proxy at pinned versions:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd (go.etcd.io/etcd/server/v3), kwok and kwokctl (sigs.k8s.io/kwok) and helm.
# Binaries land in $TOOLS_DIR (outside the repository); a binary that exists is not rebuilt.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

TOOLS_DIR="${AUTOTUNER_TOOLS_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/autotuner/tools}"
BIN_DIR="$TOOLS_DIR/bin-k8s-$K8S_VERSION"
SRC_DIR="$TOOLS_DIR/src"
mkdir -p "$BIN_DIR" "$SRC_DIR"
export CGO_ENABLED=0 GOFLAGS="${GOFLAGS:-} -trimpath"

log() { printf '[build-tools] %s\n' "$*" >&2; }

k8s_ldflags() {
  local minor="${K8S_VERSION#v1.}"; minor="${minor%%.*}"
  local pkgs=(k8s.io/component-base/version k8s.io/client-go/pkg/version)
  local flags="-s -w"
  for p in "${pkgs[@]}"; do
    flags+=" -X $p.gitVersion=$K8S_VERSION -X $p.gitMajor=1 -X $p.gitMinor=$minor"
    flags+=" -X $p.gitTreeState=clean -X $p.buildDate=1970-01-01T00:00:00Z"
  done
  printf '%s' "$flags"
}

build_kubernetes() {
  local wanted=(kube-apiserver kube-controller-manager kube-scheduler kubectl)
  local missing=()
  for b in "${wanted[@]}"; do [[ -x "$BIN_DIR/$b" ]] || missing+=("$b"); done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  local mod="$SRC_DIR/kubernetes-$K8S_VERSION"
  mkdir -p "$mod"
  if [[ ! -f "$mod/go.sum" ]]; then
    log "preparing wrapper module for k8s.io/kubernetes@$K8S_VERSION"
    local kk_gomod
    kk_gomod="$(go mod download -json "k8s.io/kubernetes@$K8S_VERSION" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
    local staging_version="v0${K8S_VERSION#v1}"
    {
      echo "module autotuner.local/kubernetes-tools"
      echo
      echo "go $(sed -n 's/^go //p' "$kk_gomod")"
      echo
      echo "replace ("
      sed -n '/^replace (/,/^)/p' "$kk_gomod" | sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/.*#\t\1 => \1 '"$staging_version"'#p'
      echo ")"
    } > "$mod/go.mod"
    (cd "$mod" && go get "k8s.io/kubernetes@$K8S_VERSION" >/dev/null 2>&1 || true)
    for b in "${wanted[@]}"; do
      (cd "$mod" && go get -tool "k8s.io/kubernetes/cmd/$b@$K8S_VERSION")
    done
  fi
  for b in "${missing[@]}"; do
    log "building $b $K8S_VERSION"
    (cd "$mod" && go build -ldflags "$(k8s_ldflags)" -o "$BIN_DIR/$b" "k8s.io/kubernetes/cmd/$b")
  done
}

build_etcd() {
  [[ -x "$BIN_DIR/etcd" ]] && return 0
  local mod="$SRC_DIR/etcd-$ETCD_VERSION"
  mkdir -p "$mod"
  if [[ ! -f "$mod/go.sum" ]]; then
    log "preparing wrapper module for etcd $ETCD_VERSION"
    printf 'module autotuner.local/etcd-tools\n\ngo 1.24\n' > "$mod/go.mod"
    (cd "$mod" && go get -tool "go.etcd.io/etcd/server/v3@$ETCD_VERSION")
  fi
  log "building etcd $ETCD_VERSION"
  (cd "$mod" && go build -ldflags "-s -w" -o "$BIN_DIR/etcd" go.etcd.io/etcd/server/v3)
}

build_installable() {  # name, package@version
  local name="$1" pkg="$2"
  [[ -x "$BIN_DIR/$name" ]] && return 0
  log "building $name from $pkg"
  GOBIN="$BIN_DIR" go install -ldflags "-s -w" "$pkg"
}

build_etcd
build_installable kwok "sigs.k8s.io/kwok/cmd/kwok@$KWOK_VERSION"
build_installable kwokctl "sigs.k8s.io/kwok/cmd/kwokctl@$KWOK_VERSION"
build_installable helm "helm.sh/helm/v3/cmd/helm@$HELM_VERSION"
build_kubernetes
echo "$BIN_DIR"
