#!/bin/bash
# cluster.sh build|up|load|down: a real one-node Kubernetes v1.34 on
# 127.0.0.1 for tests/k8s (builder's pipeline as an Indexed Job).
#
#   hack/k8s/cluster.sh build                 # the binaries, once; cached
#   K8S_DIR=$(mktemp -d) hack/k8s/cluster.sh up
#   K8S_DIR=... hack/k8s/cluster.sh load localhost/builder-k8s:latest
#   kubectl --kubeconfig $K8S_DIR/kubeconfig get nodes
#   K8S_DIR=... hack/k8s/cluster.sh down      # stops everything, removes K8S_DIR
#
# apiserver, controller-manager, scheduler, kubelet (and kubectl) are one
# binary built from the k8s.io/kubernetes module (hack/k8s/kube) and kept
# under $K8S_CACHE (/var/tmp/builder-test-cache/k8s), rebuilt when
# hack/k8s/kube changes: about 7 min cold on 2 cores, seconds warm. etcd,
# containerd, runc and the CNI plugins are Debian's. Every listener is on
# 127.0.0.1; pods use the node's network (hostNetwork: there is no pod
# network, only the loopback CNI plugin the runtime insists on).
# Why each setting: shared/docs/kubernetes-on-loopback.md.
#
# Environment: K8S_DIR state directory (required for up/load/down);
# K8S_CACHE (default /var/tmp/builder-test-cache/k8s).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
CACHE=${K8S_CACHE:-/var/tmp/builder-test-cache/k8s}
KUBE=$CACHE/bin/kube
export PATH=/usr/local/go/bin:/usr/sbin:/sbin:$PATH
log() { echo "k8s: $*" >&2; }

# The Debian packages the cluster runs on.
install_packages() {
    local p missing=()
    for p in etcd-server containerd runc containernetworking-plugins busybox-static gcc libc6-dev podman; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        log "installing ${missing[*]}"
        DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -q --no-install-recommends "${missing[@]}" >&2
    fi
}

build() {
    install_packages
    mkdir -p "$CACHE/bin"
    local stamp want
    want=$(cat "$here/kube/go.mod" "$here/kube/go.sum" "$here/kube/main.go" | sha256sum | cut -c1-16)
    stamp=$(cat "$CACHE/bin/kube.stamp" 2>/dev/null || true)
    if [ -x "$KUBE" ] && [ "$stamp" = "$want" ]; then
        log "cluster binaries cached: $KUBE"
    else
        local start=$SECONDS
        log "building the cluster binaries (k8s.io/kubernetes v1.34.4; about 7 min cold)"
        (cd "$here/kube" && GOTOOLCHAIN=local GOFLAGS=-mod=mod go build -trimpath \
            -ldflags="-s -w -X k8s.io/component-base/version.gitVersion=v1.34.4 -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=34" \
            -o "$KUBE.new" .)
        mv "$KUBE.new" "$KUBE"
        echo "$want" >"$CACHE/bin/kube.stamp"
        log "built in $((SECONDS - start)) s"
    fi
    # The sandbox ("pause") image: no registry to pull one from.
    if [ ! -s "$CACHE/pause.tar" ]; then
        local d
        d=$(mktemp -d)
        cat >"$d/pause.c" <<'EOF'
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
static void quit(int s) { (void)s; exit(0); }
static void reap(int s) { (void)s; while (waitpid(-1, NULL, WNOHANG) > 0) {} }
int main(void) {
	signal(SIGTERM, quit); signal(SIGINT, quit); signal(SIGCHLD, reap);
	for (;;) pause();
}
EOF
        gcc -static -O2 -o "$d/pause" "$d/pause.c"
        printf 'FROM scratch\nCOPY pause /pause\nENTRYPOINT ["/pause"]\n' >"$d/Containerfile"
        podman build -q -t localhost/pause:v1 "$d" >/dev/null
        podman save --format oci-archive -o "$CACHE/pause.tar.new" localhost/pause:v1
        mv "$CACHE/pause.tar.new" "$CACHE/pause.tar"
        rm -rf "$d"
    fi
}

need_dir() {
    if [ -z "${K8S_DIR:-}" ]; then
        echo "k8s: set K8S_DIR to the cluster's state directory" >&2
        exit 2
    fi
    P=$K8S_DIR
}

# start NAME CMD...: a daemon, run directly so that its PID is its own.
start() {
    local name=$1
    shift
    nohup "$@" >"$P/log/$name.log" 2>&1 &
    echo "$! $name" >>"$P/pids"
}

wait_for() { # SECONDS WHAT CMD...
    local n=$1 what=$2 i
    shift 2
    for i in $(seq 1 $((n * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    log "$what did not come up in $n s; its log:"
    tail -n 30 "$P/log/$what.log" >&2 || true
    return 1
}

up() {
    need_dir
    [ -x "$KUBE" ] || build
    local p
    for p in 6443 10250 10257 10259 23790 23800; do
        if ss -ltn "sport = :$p" | grep -q LISTEN; then
            log "port $p is taken: is another cluster up? (K8S_DIR=... $0 down)"
            exit 1
        fi
    done
    mkdir -p "$P"/{log,pki,cni/bin,cni/net.d,containerd,kubelet/root,kubelet/pki,podlogs,etcd}
    : >"$P/pids"
    local start=$SECONDS
    # CNI: the loopback plugin only; pods use the node's network.
    ln -sf /usr/lib/cni/loopback "$P/cni/bin/loopback"
    echo '{"cniVersion":"0.4.0","name":"lo","plugins":[{"type":"loopback"}]}' >"$P/cni/net.d/10-lo.conflist"
    cat >"$P/containerd/config.toml" <<EOF
version = 2
root = "$P/containerd/root"
state = "$P/containerd/state"
[grpc]
  address = "$P/containerd/containerd.sock"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pause:v1"
  # No CAP_SYS_RESOURCE on these machines: the kubelet's oom_score_adj -998
  # for the sandbox would make every sandbox fail.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "$P/cni/bin"
    conf_dir = "$P/cni/net.d"
EOF
    start containerd containerd --config "$P/containerd/config.toml"
    start etcd etcd --name k8s --data-dir "$P/etcd" --listen-client-urls http://127.0.0.1:23790 \
        --advertise-client-urls http://127.0.0.1:23790 --listen-peer-urls http://127.0.0.1:23800 \
        --initial-advertise-peer-urls http://127.0.0.1:23800 --initial-cluster k8s=http://127.0.0.1:23800 \
        --listen-metrics-urls http://127.0.0.1:23810
    openssl genrsa -out "$P/pki/sa.key" 2048 2>/dev/null
    openssl rsa -in "$P/pki/sa.key" -pubout -out "$P/pki/sa.pub" 2>/dev/null
    local token
    token=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
    echo "$token,admin,admin,system:masters" >"$P/pki/tokens.csv"
    cat >"$P/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: local, cluster: {server: "https://127.0.0.1:6443", insecure-skip-tls-verify: true}}]
users: [{name: admin, user: {token: "$token"}}]
contexts: [{name: local, context: {cluster: local, user: admin, namespace: default}}]
current-context: local
EOF
    chmod 600 "$P/kubeconfig" "$P/pki/tokens.csv"
    wait_for 30 containerd test -S "$P/containerd/containerd.sock"
    ctr -a "$P/containerd/containerd.sock" -n k8s.io images import "$CACHE/pause.tar" >/dev/null
    wait_for 30 etcd curl -sf http://127.0.0.1:23790/health
    start apiserver "$KUBE" apiserver --etcd-servers=http://127.0.0.1:23790 --bind-address=127.0.0.1 \
        --advertise-address=127.0.0.1 --secure-port=6443 --cert-dir="$P/pki/apiserver" \
        --token-auth-file="$P/pki/tokens.csv" --authorization-mode=AlwaysAllow \
        --service-account-issuer=https://kubernetes.default.svc --service-account-key-file="$P/pki/sa.pub" \
        --service-account-signing-key-file="$P/pki/sa.key" --service-cluster-ip-range=10.96.0.0/24 \
        --endpoint-reconciler-type=none --kubelet-preferred-address-types=Hostname
    wait_for 60 apiserver curl -skf -H "Authorization: Bearer $token" https://127.0.0.1:6443/readyz
    start controller-manager "$KUBE" controller-manager --kubeconfig="$P/kubeconfig" --leader-elect=false \
        --bind-address=127.0.0.1 --secure-port=10257 --service-account-private-key-file="$P/pki/sa.key" \
        --use-service-account-credentials=false
    start scheduler "$KUBE" scheduler --kubeconfig="$P/kubeconfig" --leader-elect=false \
        --bind-address=127.0.0.1 --secure-port=10259
    cat >"$P/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
containerRuntimeEndpoint: unix://$P/containerd/containerd.sock
address: 127.0.0.1
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
authentication: {anonymous: {enabled: true}, webhook: {enabled: false}}
authorization: {mode: AlwaysAllow}
failSwapOn: false
failCgroupV1: false
localStorageCapacityIsolation: false
enforceNodeAllocatable: []
podLogsDir: $P/podlogs
evictionHard: {memory.available: "100Mi", nodefs.available: "1%", imagefs.available: "1%"}
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
rotateCertificates: false
serializeImagePulls: false
EOF
    start kubelet "$KUBE" kubelet --kubeconfig="$P/kubeconfig" --config="$P/kubelet.yaml" \
        --root-dir="$P/kubelet/root" --cert-dir="$P/kubelet/pki" --hostname-override=localhost
    wait_for 90 kubelet kubectl wait --for=condition=Ready node/localhost --timeout=2s
    # The default ServiceAccount appears shortly after the controller-manager starts.
    wait_for 60 controller-manager kubectl get serviceaccount default
    log "cluster up in $((SECONDS - start)) s: KUBECONFIG=$P/kubeconfig"
}

kubectl() { "$KUBE" kubectl --kubeconfig="$P/kubeconfig" "$@"; }

load() {
    need_dir
    local img
    for img in "$@"; do
        podman save --format oci-archive -o "$P/image.tar" "$img"
        ctr -a "$P/containerd/containerd.sock" -n k8s.io images import "$P/image.tar" >/dev/null
        rm -f "$P/image.tar"
        log "loaded $img"
    done
}

down() {
    need_dir
    [ -d "$P" ] || return 0
    if [ -s "$P/pids" ]; then
        local pid name
        # The kubelet first: it would restart what the others stop.
        while read -r pid name; do
            case $name in kubelet) kill "$pid" 2>/dev/null || true ;; esac
        done <"$P/pids"
        # Pods' containers: their shims outlive containerd.
        if [ -S "$P/containerd/containerd.sock" ]; then
            local c
            for c in $(ctr -a "$P/containerd/containerd.sock" -n k8s.io tasks ls -q 2>/dev/null); do
                ctr -a "$P/containerd/containerd.sock" -n k8s.io tasks kill -s SIGKILL "$c" >/dev/null 2>&1 || true
            done
        fi
        tac "$P/pids" | while read -r pid name; do kill "$pid" 2>/dev/null || true; done
        local i
        for i in $(seq 1 50); do
            local alive=0
            while read -r pid name; do kill -0 "$pid" 2>/dev/null && alive=1; done <"$P/pids"
            [ $alive = 0 ] && break
            sleep 0.2
        done
        while read -r pid name; do kill -9 "$pid" 2>/dev/null || true; done <"$P/pids"
    fi
    # Shims of this containerd, if any survived.
    local shim
    for shim in $(pgrep -f "containerd-shim-runc-v2 .*-address $P/containerd/containerd.sock" || true); do
        kill -9 "$shim" 2>/dev/null || true
    done
    # Mounts under the state directory (the kubelet bind-mounts its root
    # onto itself, pods' volumes, containerd's snapshots), deepest first.
    local m
    for m in $(awk -v p="$P" 'index($2, p) == 1 {print $2}' /proc/mounts | sort -r); do
        umount -l "$m" 2>/dev/null || true
    done
    rm -rf /run/containerd/runc/k8s.io
    local d
    for d in /sys/fs/cgroup/*/kubepods; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
    done
    rm -rf "$P"
}

case ${1:-} in
build) build ;;
up) up ;;
load)
    shift
    load "$@"
    ;;
down) down ;;
*)
    echo "usage: $0 build|up|load IMAGE...|down (K8S_DIR names the cluster's state directory)" >&2
    exit 2
    ;;
esac
