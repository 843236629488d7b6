//go:build soak

package gateway_test

import (
	"testing"
	"time"

	"github.com/qxtd/qxtd/policy"
)

// TestSoakBindFlood is the bind flood at the production bcrypt cost with
// the target: a real bind answers in < 1 s. Run it without -race
// (make soak), where bcrypt runs at its real speed.
func TestSoakBindFlood(t *testing.T) {
	bindFloodCases(t, policy.DefaultBcryptCost, func(time.Duration) time.Duration { return time.Second })
}
