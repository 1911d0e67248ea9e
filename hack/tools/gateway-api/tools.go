//go:build tools

// Package tools pins sigs.k8s.io/gateway-api so `go mod tidy` keeps the requirement.
// pkg/consts is imported because it has no imports of its own, which keeps go.sum
// to gateway-api alone; what hack/cluster uses is the module's config/crd tree.
package tools

import (
	_ "sigs.k8s.io/gateway-api/pkg/consts"
)
