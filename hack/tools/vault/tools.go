//go:build tools

// Package tools pins the Vault server built by hack/services.
package tools

import (
	_ "github.com/hashicorp/vault"
)
