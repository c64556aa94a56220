package main

import (
	"fmt"
	"runtime"
)

func init() {
	register(command{name: "version", summary: "print the agent's version and build", run: runVersion})
}

func runVersion(env *cmdEnv, args []string) int {
	fs := env.newFlags("version")
	if ok, st := parseFlags(fs, args); !ok {
		return st
	}
	fmt.Fprintf(env.stdout, "dcagent %s %s/%s %s pkcs11=%v\n", version, runtime.GOOS, runtime.GOARCH, runtime.Version(), pkcs11Built)
	return 0
}
