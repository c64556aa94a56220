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
      # On a loaded machine the fuzzing engine can run out of its time
      # before it has even measured the seed corpus, and says only
      # "context deadline exceeded": that is no finding, so run once more
      # with twice the time. A real finding names a failing input.
      if grep -q "context deadline exceeded" /tmp/fuzz.$$.log && ! grep -q "Failing input\|panic:" /tmp/fuzz.$$.log; then
        echo "fuzz: $dir $target ran out of time before fuzzing; again with twice the time"
        if go test -run='^$' -fuzz="^${target}\$" -fuzztime="$(( ${fuzztime%s} * 2 ))s" "./$dir" >/tmp/fuzz.$$.log 2>&1; then
          continue
        fi
      fi
      cat /tmp/fuzz.$$.log; status=1
    fi
  done
done < <(grep -rl --include='*_test.go' -E '^func Fuzz' . | sed 's|^\./||' | sort)
rm -f /tmp/fuzz.$$.log
exit $status
