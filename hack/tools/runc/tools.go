//go:build tools

// Package tools pins the commands hack/cluster builds for the real node.
package tools

import (
	_ "github.com/opencontainers/runc"
)
