//go:build tools

// Package tools pins the command hack/cluster builds for the real node's metrics API.
package tools

import (
	_ "sigs.k8s.io/metrics-server/cmd/metrics-server"
)
