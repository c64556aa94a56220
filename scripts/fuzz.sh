#!/usr/bin/env bash
# Runs every fuzz target in the tree for a short time (FUZZTIME, default 5s)
# so that a parser that panics on a corpus entry or a quick mutation fails CI.
set -euo pipefail
fuzztime=${FUZZTIME:-5s}
status=0
while IFS= read -r file; do
  dir=$(dirname "$file")
  for target in $(grep -oE '^func (Fuzz[A-Za-z0-9_]+)' "$file" | awk '{print $2}'); do
    echo "fuzz: $dir $target ($fuzztime)"
    if ! go test -run='^$' -fuzz="^${target}\$" -fuzztime="$fuzztime" "./$dir" >/tmp/fuzz.$$.log 2>&1; then
      cat /tmp/fuzz.$$.log; status=1
    fi
  done
done < <(grep -rl --include='*_test.go' -E '^func Fuzz' . | sed 's|^\./||' | sort)
rm -f /tmp/fuzz.$$.log
exit $status
