//go:build unix && race

package main

// crashRace builds the hub for TestCrashSIGKILL with the race detector
// when the tests themselves run with it.
const crashRace = true
