package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// dbXacts are the transactions one case committed and rolled back in Agate's
// PostgreSQL database (a .pg file: "commits rollbacks"). Rollbacks are mostly
// serialization failures that Agate retried.
type dbXacts struct {
	Commits, Rollbacks float64
	Known              bool
}

func readDBXacts(path string) (dbXacts, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return dbXacts{}, nil
	}
	if err != nil {
		return dbXacts{}, err
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return dbXacts{}, fmt.Errorf("%s: want commits and rollbacks", path)
	}
	c, err1 := strconv.ParseFloat(f[0], 64)
	r, err2 := strconv.ParseFloat(f[1], 64)
	if err := errors.Join(err1, err2); err != nil {
		return dbXacts{}, fmt.Errorf("%s: %w", path, err)
	}
	return dbXacts{Commits: c, Rollbacks: r, Known: true}, nil
}

// perCall formats n transactions per successful call.
func (x dbXacts) perCall(ok int64, n float64) string {
	if !x.Known || ok == 0 {
		return "–"
	}
	return strconv.FormatFloat(n/float64(ok), 'f', 2, 64)
}
