//go:build race

package gateway_test

// raceEnabled: the race detector slows bcrypt several times over, so
// timing targets are not checked under it.
const raceEnabled = true
