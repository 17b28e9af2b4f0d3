#!/usr/bin/env bash
# Builds the pinned local control plane (kube-apiserver, kube-controller-manager, etcd, kubectl) once per version into a per-user
# cache and links the binaries into bin/. envtest (make test) and `make dev` use them through
# KUBEBUILDER_ASSETS=bin. A fresh clone on the same machine reuses the cache; a new machine builds it
# (measured cold on 2 shared cores: etcd 1.7 min, kube-apiserver 10.9, kube-controller-manager 3.7, kubectl 0.5;
# kube-controller-manager takes 1.3 minutes when a warm Go build cache holds the packages it shares with kube-apiserver).
set -euo pipefail

KUBE_VERSION=v1.37.2
ETCD_VERSION=v3.6.16

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache_root=${KEYSMITH_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/keysmith}
# The Go that builds the control plane: the wrapper modules' (the local toolchain), not the one keysmith's
# go.mod asks for, so that a toolchain bump of keysmith does not rebuild kube-apiserver.
gover=$(cd "$root/hack/controlplane/kubernetes" && go env GOVERSION)
kube_dir="$cache_root/kubernetes-$KUBE_VERSION-$gover"
etcd_dir="$cache_root/etcd-$ETCD_VERSION-$gover"
bin="$root/bin"
mkdir -p "$bin" "$kube_dir" "$etcd_dir"

# Keep the pins in the wrapper modules and in this script in step.
grep -q "k8s.io/kubernetes $KUBE_VERSION" "$root/hack/controlplane/kubernetes/go.mod" || { echo "hack/controlplane/kubernetes/go.mod does not pin $KUBE_VERSION" >&2; exit 1; }
grep -q "go.etcd.io/etcd/server/v3 $ETCD_VERSION" "$root/hack/controlplane/etcd/go.mod" || { echo "hack/controlplane/etcd/go.mod does not pin $ETCD_VERSION" >&2; exit 1; }

minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
kube_ldflags="-s -w \
 -X k8s.io/component-base/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/component-base/version.gitMajor=1 \
 -X k8s.io/component-base/version.gitMinor=$minor \
 -X k8s.io/component-base/version.gitTreeState=clean \
 -X k8s.io/client-go/pkg/version.gitVersion=$KUBE_VERSION \
 -X k8s.io/client-go/pkg/version.gitMajor=1 \
 -X k8s.io/client-go/pkg/version.gitMinor=$minor"

build() { # dir out package ldflags
  local dir=$1 out=$2 pkg=$3 ldflags=$4
  if [ -x "$out" ]; then return 0; fi
  echo ">> building $(basename "$out") ($pkg) into $out" >&2
  local start=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out.tmp" "$pkg")
  mv "$out.tmp" "$out"
  echo ">> built $(basename "$out") in $((SECONDS - start))s" >&2
}

build "$root/hack/controlplane/etcd" "$etcd_dir/etcd" . "-s -w"
build "$root/hack/controlplane/kubernetes" "$kube_dir/kube-apiserver" k8s.io/kubernetes/cmd/kube-apiserver "$kube_ldflags"
build "$root/hack/controlplane/kubernetes" "$kube_dir/kube-controller-manager" k8s.io/kubernetes/cmd/kube-controller-manager "$kube_ldflags"
build "$root/hack/controlplane/kubernetes" "$kube_dir/kubectl" k8s.io/kubernetes/cmd/kubectl "$kube_ldflags"

ln -sfn "$etcd_dir/etcd" "$bin/etcd"
ln -sfn "$kube_dir/kube-apiserver" "$bin/kube-apiserver"
ln -sfn "$kube_dir/kube-controller-manager" "$bin/kube-controller-manager"
ln -sfn "$kube_dir/kubectl" "$bin/kubectl"
echo ">> control plane ready in $bin: kube-apiserver and kube-controller-manager $KUBE_VERSION, etcd $ETCD_VERSION" >&2
