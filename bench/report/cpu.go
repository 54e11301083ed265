package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strconv"
	"strings"
)

// cpuUse is how many cores the server under test, the load generator and the
// whole machine kept busy during one case (written by lib.sh's with_cpu).
type cpuUse struct{ Server, Generator, Machine float64 }

// readCPU reads a .cpu file beside a result; a missing one gives zero values.
func readCPU(path string) (cpuUse, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return cpuUse{}, nil
	}
	if err != nil {
		return cpuUse{}, err
	}
	f := strings.Fields(string(b))
	if len(f) != 3 {
		return cpuUse{}, fmt.Errorf("%s: want three numbers", path)
	}
	var v [3]float64
	for i := range v {
		if v[i], err = strconv.ParseFloat(f[i], 64); err != nil {
			return cpuUse{}, fmt.Errorf("%s: %w", path, err)
		}
	}
	return cpuUse{Server: v[0], Generator: v[1], Machine: v[2]}, nil
}

func (c cpuUse) cells() []string {
	return []string{cores(c.Server), cores(c.Generator), cores(c.Machine)}
}

func cores(f float64) string {
	if f == 0 {
		return "–"
	}
	return strconv.FormatFloat(f, 'f', 2, 64)
}

// perCall is the server's CPU time per successful operation, in µs.
func perCall(cores, perSec float64) string {
	if cores == 0 || perSec == 0 {
		return "–"
	}
	return num(cores / perSec * 1e6)
}
