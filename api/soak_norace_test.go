//go:build soak && !race

package api

// raceOn: the race detector's shadow memory inflates RSS several times.
const raceOn = false
