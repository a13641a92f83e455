package store

import "io/fs"

func readDirNames() ([]string, error) {
	entries, err := fs.ReadDir(Migrations(), ".")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, err
}

// ReadDir lists the embedded migration files (for the external tests).
var ReadDir = readDirNames
