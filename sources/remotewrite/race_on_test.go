//go:build race

package remotewrite

// raceEnabled: the race detector is on; sync.Pool then drops items at
// random, so allocation counts of pooled paths are not the code's.
const raceEnabled = true
