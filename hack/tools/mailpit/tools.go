//go:build tools

// Package tools pins the Mailpit SMTP catcher built by hack/services.
package tools

import (
	_ "github.com/axllent/mailpit"
)
