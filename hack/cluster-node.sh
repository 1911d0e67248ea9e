# shellcheck shell=bash
# The real node of `hack/cluster up --real`, sourced by hack/cluster.
#
# One real node per machine (it owns host-wide things: a bridge, iptables chains, cgroups):
#   bridge ksbr0 10.244.1.1/24   the node's address and the pods' gateway; pods live in network
#                                namespaces on it; the service range is routed onto it too, and
#                                a FORWARD guard drops anything a pod sends out of the bridge, so
#                                nothing leaves this machine
#   containerd + runc + CNI      state under $STATE/node; images are imported, never pulled
#   kubelet, kube-proxy          cgroup v1 (hybrid) with the cgroupfs driver
#   kube-router                  NetworkPolicy enforcement only (iptables + ipset)
#   CoreDNS (pod, kube-system)   cluster DNS at 10.96.0.10; answers cluster.local only
#   Traefik (pod, gateway-system) Gateway API + Ingress; published on 127.0.0.1:$GATEWAY_PORT
#   metrics-server (pod, kube-system) the metrics API (metrics.k8s.io: pods' and the node's CPU
#                                and memory, from the kubelet), behind the API server's
#                                aggregation layer (front-proxy certificates, see node_certs)
# `hack/cluster down` removes all of it and `hack/cluster check-clean` says what is left.

NODE_BRIDGE=ksbr0
NODE_IP=10.244.1.1
NODE_POD_CIDR=10.244.1.0/24
NODE_GUARD_CHAIN=K8SS-NODE-GUARD
REAL_NODE_NAME=real-node-0
DNS_IP=10.96.0.10
NODE_LOCK=/run/k8s-scheduler-real-node
KUBELET_PORT=$((PORT_BASE + 6))
KUBELET_HEALTHZ_PORT=$((PORT_BASE + 7))
PROXY_HEALTHZ_PORT=$((PORT_BASE + 8))
PROXY_METRICS_PORT=$((PORT_BASE + 9))
ROUTER_HEALTH_PORT=$((PORT_BASE + 10))
GATEWAY_PORT="${GATEWAY_PORT:-$((PORT_BASE + 11))}"
NODE_DIR="$STATE/node"
CTR_SOCK="$NODE_DIR/containerd/containerd.sock"
# hack/image's pause image (the workspace version is its tag).
PAUSE_IMAGE=ghcr.io/k8s-scheduler/pause:$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' "$ROOT/Cargo.toml")
# Images the node serves, built by hack/image into $IMAGES_DIR (docker-archive tarballs).
IMAGES_DIR="${K8S_SCHEDULER_IMAGES:-$ROOT/target/images}"

is_real() { [[ -f "$STATE/real" ]]; }

node_require() {
  [[ $(id -u) == 0 ]] || die "a real node needs root (network namespaces, cgroups, iptables); run as root or use 'hack/cluster up' (kwok)"
  local c
  for c in ip iptables ipset nft conntrack mount umount; do
    command -v "$c" >/dev/null || die "$c is not installed; run: apt-get update && apt-get install -y iptables nftables conntrack ipset iproute2"
  done
  [[ -d /proc/sys/net/bridge ]] || modprobe br_netfilter 2>/dev/null || true
  [[ -d /proc/sys/net/bridge ]] || die "the kernel has no br_netfilter (needed for NetworkPolicies between pods on one bridge)"
  if [[ -f $NODE_LOCK ]] && [[ "$(cat "$NODE_LOCK")" != "$STATE" ]]; then
    local other; other=$(cat "$NODE_LOCK")
    if [[ -f "$other/pids/kubelet" ]] && kill -0 "$(cat "$other/pids/kubelet")" 2>/dev/null; then
      die "another real node runs on this machine (state $other); stop it first: K8S_SCHEDULER_STATE=$other hack/cluster down"
    fi
  fi
}

sysctl_save_set() { # key value: remember the first value seen, then set
  local key=$1 val=$2 f="$NODE_DIR/sysctl.saved"
  local path=/proc/sys/${key//.//}
  grep -q "^$key=" "$f" 2>/dev/null || echo "$key=$(cat "$path")" >> "$f"
  echo "$val" > "$path"
}

node_network_up() {
  mkdir -p "$NODE_DIR"
  echo "$STATE" > "$NODE_LOCK"
  sysctl_save_set net.ipv4.ip_forward 1
  sysctl_save_set net.bridge.bridge-nf-call-iptables 1
  if ! ip link show "$NODE_BRIDGE" >/dev/null 2>&1; then
    ip link add "$NODE_BRIDGE" type bridge
    ip addr add "$NODE_IP/24" dev "$NODE_BRIDGE"
  fi
  ip link set "$NODE_BRIDGE" up
  # Service IPs are answered by kube-proxy's DNAT; whatever it does not handle goes to the bridge
  # and dies there instead of following the default route off the machine.
  ip route replace "$SERVICE_CIDR" dev "$NODE_BRIDGE"
  # Pods talk to pods and to this host; anything they send out of the bridge is dropped.
  iptables -N "$NODE_GUARD_CHAIN" 2>/dev/null || iptables -F "$NODE_GUARD_CHAIN"
  iptables -A "$NODE_GUARD_CHAIN" -i "$NODE_BRIDGE" ! -o "$NODE_BRIDGE" -j DROP
  iptables -C FORWARD -j "$NODE_GUARD_CHAIN" 2>/dev/null || iptables -I FORWARD 1 -j "$NODE_GUARD_CHAIN"
}

node_certs() {
  local p=$STATE/pki
  aggregation_certs
  [[ -f $p/.node-complete ]] && return
  (
    cd "$p" || exit 1
    sign() {
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%s\n' "$3" > "$1.ext"
      openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -out "$1.crt" -days 3650 -extfile "$1.ext" 2>/dev/null
    }
    sign kubelet "/O=system:nodes/CN=system:node:$REAL_NODE_NAME" "extendedKeyUsage=clientAuth"
    sign kubelet-serving "/CN=$REAL_NODE_NAME" "subjectAltName=IP:$NODE_IP,DNS:$REAL_NODE_NAME
extendedKeyUsage=serverAuth"
    sign apiserver-kubelet-client "/O=system:masters/CN=kube-apiserver-kubelet-client" "extendedKeyUsage=clientAuth"
    sign kube-proxy "/CN=system:kube-proxy" "extendedKeyUsage=clientAuth"
    sign kube-router "/O=system:masters/CN=kube-router" "extendedKeyUsage=clientAuth"
    touch .node-complete
  )
}

# The aggregation layer (metrics.k8s.io is served by metrics-server through the API server):
#   front-proxy-ca, front-proxy-client  the API server's client certificate towards aggregated
#       API servers, which believe the user it names in X-Remote-User. A CA of its own (as kubeadm
#       does): the cluster CA's client certificates must not be able to claim any user that way.
#   metrics-server  its serving certificate, for the name the aggregator checks
#       (<service>.<namespace>.svc), so the APIService carries a caBundle instead of skipping TLS
#       verification. It has a marker of its own: a state made before it gets it on the next `up`.
aggregation_certs() {
  local p=$STATE/pki
  [[ -f $p/.aggregation-complete ]] && return
  (
    cd "$p" || exit 1
    openssl req -x509 -newkey rsa:2048 -nodes -keyout front-proxy-ca.key -out front-proxy-ca.crt -days 3650 \
      -subj "/CN=k8s-scheduler-local-front-proxy-ca" 2>/dev/null
    sign() { # name subj ext ca
      openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "$2" 2>/dev/null
      printf '%s\n' "$3" > "$1.ext"
      openssl x509 -req -in "$1.csr" -CA "$4.crt" -CAkey "$4.key" -CAcreateserial -out "$1.crt" -days 3650 -extfile "$1.ext" 2>/dev/null
    }
    sign front-proxy-client "/CN=front-proxy-client" "extendedKeyUsage=clientAuth" front-proxy-ca
    sign metrics-server "/CN=metrics-server.kube-system.svc" "subjectAltName=DNS:metrics-server.kube-system.svc,DNS:metrics-server.kube-system,DNS:metrics-server
extendedKeyUsage=serverAuth" ca
    touch .aggregation-complete
  )
}

# kube-apiserver's flags for the aggregation layer (real node only). Aggregator routing: the API
# server dials the metrics-server pod's IP on the bridge directly (this host routes the pod
# range through $NODE_BRIDGE) instead of its Service IP, which only kube-proxy's DNAT answers.
aggregation_apiserver_args() {
  local p=$STATE/pki
  printf '%s\n' --requestheader-client-ca-file "$p/front-proxy-ca.crt" \
    --requestheader-allowed-names front-proxy-client \
    --requestheader-username-headers X-Remote-User --requestheader-group-headers X-Remote-Group \
    --requestheader-extra-headers-prefix X-Remote-Extra- \
    --proxy-client-cert-file "$p/front-proxy-client.crt" --proxy-client-key-file "$p/front-proxy-client.key" \
    --enable-aggregator-routing=true
}

write_containerd_config() {
  mkdir -p "$NODE_DIR/containerd" "$NODE_DIR/cni/net.d"
  cat > "$NODE_DIR/containerd/config.toml" <<EOF
version = 3
root = "$NODE_DIR/containerd/root"
state = "$NODE_DIR/containerd/state"
[grpc]
  address = "$CTR_SOCK"
[ttrpc]
  address = "$CTR_SOCK.ttrpc"
[plugins]
  [plugins.'io.containerd.cri.v1.images']
    snapshotter = 'overlayfs'
    [plugins.'io.containerd.cri.v1.images'.pinned_images]
      sandbox = '$PAUSE_IMAGE'
    # Nothing is ever pulled: every registry (_default) is a closed loopback port, so a missing
    # image fails at once (ErrImagePull) instead of reaching out of this machine.
    [plugins.'io.containerd.cri.v1.images'.registry]
      config_path = '$NODE_DIR/containerd/certs.d'
  [plugins.'io.containerd.cri.v1.runtime']
    # root here lacks CAP_SYS_RESOURCE: runc cannot lower oom_score_adj below containerd's own.
    restrict_oom_score_adj = true
    disable_apparmor = true
    enable_unprivileged_ports = true
    [plugins.'io.containerd.cri.v1.runtime'.containerd]
      default_runtime_name = 'runc'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
        runtime_type = 'io.containerd.runc.v2'
        [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
          BinaryName = '$RUNC_BIN/runc'
          SystemdCgroup = false
    [plugins.'io.containerd.cri.v1.runtime'.cni]
      bin_dirs = ['$CNI_BIN']
      conf_dir = '$NODE_DIR/cni/net.d'
  [plugins.'io.containerd.grpc.v1.cri']
    stream_server_address = '127.0.0.1'
EOF
  mkdir -p "$NODE_DIR/containerd/certs.d/_default"
  cat > "$NODE_DIR/containerd/certs.d/_default/hosts.toml" <<EOF
server = "http://127.0.0.1:1"
[host."http://127.0.0.1:1"]
  capabilities = ["pull", "resolve"]
EOF
  cat > "$NODE_DIR/cni/net.d/10-k8ss.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "k8ss",
  "plugins": [
    { "type": "bridge", "bridge": "$NODE_BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": { "type": "host-local", "dataDir": "$NODE_DIR/cni/ipam",
                "ranges": [[{ "subnet": "$NODE_POD_CIDR", "gateway": "$NODE_IP" }]],
                "routes": [{ "dst": "0.0.0.0/0" }] } },
    { "type": "portmap", "capabilities": { "portMappings": true }, "snat": true }
  ]
}
EOF
}

write_kubelet_config() {
  local p=$STATE/pki
  mkdir -p "$NODE_DIR/kubelet" "$NODE_DIR/pod-logs"
  write_kubeconfig "$NODE_DIR/kubelet.kubeconfig" kubelet "system:node:$REAL_NODE_NAME"
  write_kubeconfig "$NODE_DIR/kube-proxy.kubeconfig" kube-proxy system:kube-proxy
  write_kubeconfig "$NODE_DIR/kube-router.kubeconfig" kube-router kube-router
  cat > "$NODE_DIR/kubelet.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
address: $NODE_IP
port: $KUBELET_PORT
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: $KUBELET_HEALTHZ_PORT
authentication:
  anonymous: { enabled: false }
  webhook: { enabled: true }
  x509: { clientCAFile: $p/ca.crt }
authorization: { mode: Webhook }
tlsCertFile: $p/kubelet-serving.crt
tlsPrivateKeyFile: $p/kubelet-serving.key
# This machine has cgroup v1 (hybrid): say so, or kubelet 1.35+ refuses to start.
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
containerRuntimeEndpoint: unix://$CTR_SOCK
clusterDNS: [$DNS_IP]
clusterDomain: cluster.local
# No host resolv.conf: pods resolve cluster names only, nothing is looked up off the machine.
resolvConf: ""
podLogsDir: $NODE_DIR/pod-logs
# Images are imported, never pulled: never garbage-collect them.
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
evictionHard: { memory.available: 100Mi, nodefs.available: 1%, imagefs.available: 1%, nodefs.inodesFree: 1% }
serializeImagePulls: false
maxPods: 110
EOF
  cat > "$NODE_DIR/kube-proxy.yaml" <<EOF
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
clientConnection: { kubeconfig: $NODE_DIR/kube-proxy.kubeconfig }
hostnameOverride: $REAL_NODE_NAME
mode: iptables
clusterCIDR: $NODE_POD_CIDR
healthzBindAddress: 127.0.0.1:$PROXY_HEALTHZ_PORT
metricsBindAddress: 127.0.0.1:$PROXY_METRICS_PORT
nodePortAddresses: ["$NODE_IP/32"]
# Leave the host's conntrack sysctls alone (they may be read-only here).
conntrack: { maxPerCore: 0, min: 0, tcpEstablishedTimeout: 0s, tcpCloseWaitTimeout: 0s }
EOF
}

# CoreDNS, Traefik and metrics-server as images: their static binaries on the same minimal base
# as ours (hack/image binary), cached by the binaries' build keys and hack/image.py.
build_infra_images() {
  COREDNS_IMAGE=localhost/k8s-scheduler-node/coredns:$(pinned coredns github.com/coredns/coredns)
  TRAEFIK_IMAGE=localhost/k8s-scheduler-node/traefik:$(pinned traefik github.com/traefik/traefik/v3)
  METRICS_SERVER_IMAGE=localhost/k8s-scheduler-node/metrics-server:$(pinned metrics-server sigs.k8s.io/metrics-server)
  local key; key=$({ echo "$COREDNS_BIN $TRAEFIK_BIN $METRICS_SERVER_BIN $COREDNS_IMAGE $TRAEFIK_IMAGE $METRICS_SERVER_IMAGE"
    cat "$ROOT/hack/image.py"; } | sha256sum | cut -c1-12)
  INFRA_IMAGES="$CACHE/tools/node-images-$key"
  [[ -f "$INFRA_IMAGES/.complete" ]] && return
  log "building the CoreDNS, Traefik and metrics-server images (hack/image binary)"
  rm -rf "$INFRA_IMAGES.tmp"; mkdir -p "$INFRA_IMAGES.tmp"
  "$ROOT/hack/image" binary --binary "$COREDNS_BIN/coredns" --ref "$COREDNS_IMAGE" --port 53/udp --port 53/tcp \
    --description "CoreDNS for the local real node" --out "$INFRA_IMAGES.tmp" >&2 \
    || die "building the CoreDNS image failed (see above)"
  "$ROOT/hack/image" binary --binary "$TRAEFIK_BIN/traefik" --ref "$TRAEFIK_IMAGE" --port 8000/tcp \
    --description "Traefik for the local real node" --out "$INFRA_IMAGES.tmp" >&2 \
    || die "building the Traefik image failed (see above)"
  "$ROOT/hack/image" binary --binary "$METRICS_SERVER_BIN/metrics-server" --ref "$METRICS_SERVER_IMAGE" --port 10250/tcp \
    --description "metrics-server for the local real node" --out "$INFRA_IMAGES.tmp" >&2 \
    || die "building the metrics-server image failed (see above)"
  rm -rf "$INFRA_IMAGES"; mv "$INFRA_IMAGES.tmp" "$INFRA_IMAGES"; touch "$INFRA_IMAGES/.complete"
}

ctr_() { "$CONTAINERD_BIN/ctr" --address "$CTR_SOCK" -n k8s.io "$@"; }

import_images() {
  local f n=0
  [[ -d $IMAGES_DIR ]] || die "no images in $IMAGES_DIR; build them first: hack/image --out $IMAGES_DIR"
  [[ -f "$IMAGES_DIR/pause.oci.tar" ]] || die "no pause image in $IMAGES_DIR; build the images first: hack/image --out $IMAGES_DIR"
  # The OCI layout tars keep hack/image's manifest digests (a docker-archive gets a new one).
  for f in "$IMAGES_DIR"/*.oci.tar "$INFRA_IMAGES"/*.oci.tar; do
    [[ -f $f ]] || continue
    ctr_ images import --label io.cri-containerd.pinned=pinned "$f" >/dev/null 2>"$NODE_DIR/ctr-import.log" \
      || die "importing $f into containerd failed; rebuild it with hack/image"
    n=$((n + 1))
  done
  (( n > 2 )) || die "no image tarballs in $IMAGES_DIR; build them first: hack/image --out $IMAGES_DIR"
  log "imported $n images into containerd"
}

node_up() {
  node_require
  build_node
  node_network_up
  node_certs
  write_containerd_config
  write_kubelet_config
  PATH="$CONTAINERD_BIN:$PATH" start containerd "$CONTAINERD_BIN/containerd" --config "$NODE_DIR/containerd/config.toml" --log-level warn
  wait_for containerd 60 ctr_ version
  # containerd warns about cgroup v1 on every call (supported until at least May 2029).
  build_infra_images
  import_images
  start kubelet "$K8S_BIN/kubelet" --config "$NODE_DIR/kubelet.yaml" --kubeconfig "$NODE_DIR/kubelet.kubeconfig" \
    --root-dir "$NODE_DIR/kubelet" --cert-dir "$NODE_DIR/kubelet/pki" --hostname-override "$REAL_NODE_NAME" \
    --node-ip "$NODE_IP" --node-labels "type=real" --v=1
  wait_for "node $REAL_NODE_NAME registered" 120 kc get node "$REAL_NODE_NAME"
  # No nodeipam: give the node its pod range by hand (kube-router and kube-proxy read it).
  [[ -n "$(kc get node "$REAL_NODE_NAME" -o 'jsonpath={.spec.podCIDR}')" ]] || \
    kc patch node "$REAL_NODE_NAME" -p "{\"spec\":{\"podCIDR\":\"$NODE_POD_CIDR\",\"podCIDRs\":[\"$NODE_POD_CIDR\"]}}" >/dev/null
  start kube-proxy "$K8S_BIN/kube-proxy" --config "$NODE_DIR/kube-proxy.yaml" --v=1
  start kube-router "$ROUTER_BIN/kube-router" --kubeconfig "$NODE_DIR/kube-router.kubeconfig" \
    --run-firewall=true --run-router=false --run-service-proxy=false --enable-cni=false \
    --enable-ipv6=false --hostname-override "$REAL_NODE_NAME" --health-port "$ROUTER_HEALTH_PORT" --metrics-port 0
  wait_for "node $REAL_NODE_NAME Ready" 180 kc wait --for=condition=Ready "node/$REAL_NODE_NAME" --timeout=2s
  wait_for "kube-router healthy" 120 curl -sf "http://127.0.0.1:$ROUTER_HEALTH_PORT/healthz"
  node_addons
}

# ---------------------------------------------------------------- add-ons: DNS, the gateway, metrics

node_addons() {
  local p=$STATE/pki
  kc apply --server-side --force-conflicts -f "$(gateway_api_crds)" >/dev/null
  # metrics-server first: it starts while the CRDs settle and the other add-ons come up.
  # Its serving certificate goes in as a Secret (kubectl reads the key file; it never appears on
  # a command line); the APIService's caBundle is the cluster CA that signed it.
  {
    kc -n kube-system create secret tls metrics-server-tls --cert "$p/metrics-server.crt" --key "$p/metrics-server.key" \
      --dry-run=client -o yaml
    echo ---
    sed -e "s|@METRICS_SERVER_IMAGE@|$METRICS_SERVER_IMAGE|g" -e "s|@CA_BUNDLE@|$(base64 -w0 < "$p/ca.crt")|g" \
      "$ROOT/hack/node/metrics-server.yaml"
  } | kc apply -f - >/dev/null
  wait_for "Gateway API CRDs established" 60 kc wait --for=condition=Established crd/gateways.gateway.networking.k8s.io crd/httproutes.gateway.networking.k8s.io --timeout=2s
  sed -e "s|@DNS_IP@|$DNS_IP|g" -e "s|@COREDNS_IMAGE@|$COREDNS_IMAGE|g" "$ROOT/hack/node/coredns.yaml" | kc apply -f - >/dev/null
  sed -e "s|@GATEWAY_PORT@|$GATEWAY_PORT|g" -e "s|@TRAEFIK_IMAGE@|$TRAEFIK_IMAGE|g" "$ROOT/hack/node/traefik.yaml" | kc apply -f - >/dev/null
  wait_for "CoreDNS available" 180 kc -n kube-system wait --for=condition=Available deployment/coredns --timeout=2s
  wait_for "Traefik available" 180 kc -n gateway-system wait --for=condition=Available deployment/traefik --timeout=2s
  # Available: the API server reaches metrics-server through the aggregation layer (its
  # discovery answers). The first usage numbers follow within one --metric-resolution (15 s);
  # start-up does not wait for them.
  wait_for "metrics-server (APIService v1beta1.metrics.k8s.io Available; its log: kubectl -n kube-system logs deploy/metrics-server)" 120 \
    kc wait --for=condition=Available apiservice/v1beta1.metrics.k8s.io --timeout=2s
  log "real node $REAL_NODE_NAME is Ready; the gateway answers on http://127.0.0.1:$GATEWAY_PORT (hosts *.localhost)"
  log "the metrics API is served: kubectl top pods -A, kubectl get --raw /apis/metrics.k8s.io/v1beta1/pods (first numbers after ~15 s)"
}

# ---------------------------------------------------------------- down

stop_one() { # name
  local f="$STATE/pids/$1"
  [[ -f $f ]] || return 0
  local pid; pid=$(cat "$f")
  if kill -0 "$pid" 2>/dev/null; then
    log "stopping $1 (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$f"
}

# Mount points under a path, deepest first.
mounts_under() { awk -v p="$1" '$5 == p || index($5, p "/") == 1 {print $5}' /proc/self/mountinfo | sort -r; }

node_down() {
  [[ -d $NODE_DIR ]] || return 0
  build_node >/dev/null 2>&1 || true
  stop_one kubelet
  # Stop and remove every pod sandbox while containerd still runs: that runs CNI DEL, which
  # removes the veths, the portmap rules and the IP reservations.
  if running containerd && [[ -x "$CRICTL_BIN/crictl" ]]; then
    local crictl=("$CRICTL_BIN/crictl" --runtime-endpoint "unix://$CTR_SOCK" --timeout 30s)
    local pods; pods=$("${crictl[@]}" pods -q 2>/dev/null || true)
    if [[ -n $pods ]]; then
      log "removing $(wc -w <<<"$pods") pod sandboxes"
      # shellcheck disable=SC2086
      "${crictl[@]}" stopp $pods >/dev/null 2>&1 || true
      # shellcheck disable=SC2086
      "${crictl[@]}" rmp -f $pods >/dev/null 2>&1 || true
    fi
  fi
  stop_one kube-router
  stop_one kube-proxy
  stop_one containerd
  # Shims outlive containerd by design; ours are the ones started with our socket.
  pkill -KILL -f "containerd-shim-runc-v2 .*-address $CTR_SOCK" 2>/dev/null || true
  pkill -KILL -f "$NODE_DIR/" 2>/dev/null || true
  sleep 0.5
  local m
  for m in $(mounts_under "$NODE_DIR"); do umount -l "$m" 2>/dev/null || true; done
  for m in $(mounts_under /run/containerd); do umount -l "$m" 2>/dev/null || true; done
  # Pod network namespaces CNI DEL did not get to (a pod whose sandbox removal failed).
  while read -r m; do
    umount -l "$m" 2>/dev/null || true; rm -f "$m"
  done < <(awk '$5 ~ "^/run/netns/cni-" {print $5}' /proc/self/mountinfo)
  # Firewall state: kube-proxy's and kube-router's own clean-up, then what they leave.
  if [[ -x "$K8S_BIN/kube-proxy" ]]; then "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  if [[ -x "$ROUTER_BIN/kube-router" ]]; then "$ROUTER_BIN/kube-router" --cleanup-config >/dev/null 2>&1 || true; fi
  local t c
  for t in filter nat mangle raw; do
    iptables -t "$t" -S 2>/dev/null | awk '$1 == "-A" && $0 ~ /(KUBE-|K8SS-)/' | while read -r _ chain rest; do
      # shellcheck disable=SC2086
      eval "iptables -t $t -D $chain $rest" 2>/dev/null || true
    done
    for c in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|K8SS-)/ {print $2}'); do
      iptables -t "$t" -F "$c" 2>/dev/null || true
    done
    for c in $(iptables -t "$t" -S 2>/dev/null | awk '$1 == "-N" && $2 ~ /^(KUBE-|K8SS-)/ {print $2}'); do
      iptables -t "$t" -X "$c" 2>/dev/null || true
    done
  done
  for t in $(nft list tables 2>/dev/null | awk '$3 ~ /^kube-proxy/ {print $2 " " $3}' | tr ' ' ':'); do
    nft delete table "${t%%:*}" "${t##*:}" 2>/dev/null || true
  done
  for c in $(ipset list -n 2>/dev/null | grep -E '^(KUBE-|kube-router)' || true); do ipset destroy "$c" 2>/dev/null || true; done
  ip route del "$SERVICE_CIDR" dev "$NODE_BRIDGE" 2>/dev/null || true
  for c in $(ip -o link show master "$NODE_BRIDGE" 2>/dev/null | awk -F': ' '{print $2}' | cut -d@ -f1); do ip link del "$c" 2>/dev/null || true; done
  ip link del "$NODE_BRIDGE" 2>/dev/null || true
  # cgroups kubelet and containerd made, in every hierarchy, deepest first.
  local d
  for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io /sys/fs/cgroup/unified/kubepods /sys/fs/cgroup/unified/k8s.io; do
    [[ -d $d ]] || continue
    find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null || true
  done
  rm -f /var/lib/cni/results/k8ss-* 2>/dev/null || true
  rmdir /var/lib/cni/results /var/lib/cni 2>/dev/null || true
  rm -rf /var/lib/kubelet/device-plugins 2>/dev/null || true
  rmdir /var/lib/kubelet 2>/dev/null || true
  rm -rf /run/containerd 2>/dev/null || true
  if [[ -f "$NODE_DIR/sysctl.saved" ]]; then
    local key val
    while IFS='=' read -r key val; do echo "$val" > "/proc/sys/${key//.//}" 2>/dev/null || true; done < "$NODE_DIR/sysctl.saved"
  fi
  rm -f "$NODE_LOCK"
  rm -rf "$NODE_DIR"
}

# What a real node could leave behind; prints each finding, exit 1 if any.
cmd_check_clean() {
  local found=0 out
  say() { echo "left behind: $*"; found=1; }
  # By process name (comm, 15 characters): a `go build` of these tools is not a leftover.
  local n
  out=$(for n in kubelet kube-proxy kube-router containerd containerd-shim traefik coredns metrics-server; do pgrep -a -x "$n"; done || true)
  [[ -z $out ]] || say "processes: $out"
  out=$(awk '$5 ~ /k8s-scheduler|\/run\/containerd|kubelet|\/run\/netns\/cni-/ {print $5}' /proc/self/mountinfo)
  [[ -z $out ]] || say "mounts: $out"
  ip link show "$NODE_BRIDGE" >/dev/null 2>&1 && say "interface $NODE_BRIDGE"
  out=$(ip -o link show type veth 2>/dev/null || true)
  [[ -z $out ]] || say "veth interfaces: $out"
  out=$(iptables-save 2>/dev/null | grep -E 'KUBE-|K8SS-' || true)
  [[ -z $out ]] || say "iptables rules/chains: $(wc -l <<<"$out") lines, e.g. $(head -3 <<<"$out" | tr '\n' ' ')"
  out=$(nft list tables 2>/dev/null | grep -E 'kube' || true)
  [[ -z $out ]] || say "nftables tables: $out"
  out=$(ipset list -n 2>/dev/null || true)
  [[ -z $out ]] || say "ipsets: $(tr '\n' ' ' <<<"$out")"
  out=$(ls -d /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/*/k8s.io 2>/dev/null || true)
  [[ -z $out ]] || say "cgroups: $(tr '\n' ' ' <<<"$out")"
  [[ -e /run/containerd ]] && say "/run/containerd"
  [[ -e $NODE_LOCK ]] && say "$NODE_LOCK"
  ip route show "$SERVICE_CIDR" 2>/dev/null | grep -q . && say "route $SERVICE_CIDR"
  (( found == 0 )) && echo "clean: no processes, mounts, interfaces, firewall rules, ipsets or cgroups of a real node"
  return $found
}

gateway_api_crds() { "$ROOT/hack/tools/gateway-api/crds" || die "could not get the Gateway API CRDs (hack/tools/gateway-api/crds)"; }
