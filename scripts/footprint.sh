#!/usr/bin/env bash
# Prints the stripped static size of every binary per architecture.
set -euo pipefail
printf '%-14s %-8s %12s %10s\n' arch binary bytes MiB
for d in bin/linux-*; do
  for b in "$d"/*; do
    [ -f "$b" ] || continue
    s=$(stat -c %s "$b")
    printf '%-14s %-8s %12d %10.2f\n' "${d#bin/}" "$(basename "$b")" "$s" "$(awk -v s="$s" "BEGIN{print s/1048576}")"
  done
done
