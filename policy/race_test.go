//go:build race

package policy

// raceEnabled scales down the library-heavy tests under -race (its regular
// expressions are ~10x slower there).
const raceEnabled = true
