package main

import (
	"errors"
	"fmt"
	"io"
	"os"
)

func main() {
	if err := run(os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "report:", err)
		os.Exit(1)
	}
}

func run(args []string, w io.Writer) error {
	if len(args) != 2 {
		return errors.New("usage: report load|peers DIR")
	}
	switch args[0] {
	case "load":
		return renderLoad(w, args[1])
	case "peers":
		return renderPeers(w, args[1])
	default:
		return fmt.Errorf("unknown report %q: want load or peers", args[0])
	}
}
