//go:build tools

// Package tools pins stripe-mock, the fake Stripe API of the billing tests, built by hack/services.
package tools

import (
	_ "github.com/stripe/stripe-mock"
)
