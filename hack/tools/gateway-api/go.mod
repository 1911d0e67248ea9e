// Tools module: pins sigs.k8s.io/gateway-api for hack/cluster (real node), only for
// its CRD manifests (config/crd/standard); see ./crds. Keep the version equal to the
// one github.com/traefik/traefik/v3 requires (hack/tools/traefik/go.mod).
module k8s-scheduler/hack/tools/gateway-api

go 1.26.0

require sigs.k8s.io/gateway-api v1.4.0
