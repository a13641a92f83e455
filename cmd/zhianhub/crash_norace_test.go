//go:build unix && !race

package main

const crashRace = false
