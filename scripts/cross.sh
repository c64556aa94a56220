#!/usr/bin/env bash
# Runs the arm64 and armv7 agent binaries under qemu-user so that a
# cross-build that does not start fails CI.
set -euo pipefail
capture=${CAPTURE:-../shared/testdata/smart/json/libblockdev/HGST_HUS726060ALA640.json}
if [ ! -f "$capture" ]; then
  echo "cross: capture $capture is missing (../shared/testdata must sit beside the repository)" >&2
  exit 1
fi
for pair in "arm64 qemu-aarch64-static" "armv7 qemu-arm-static"; do
  set -- $pair
  bin=bin/linux-$1/dcagent
  if [ ! -x "$bin" ]; then echo "cross: $bin is missing: run make build" >&2; exit 1; fi
  echo "cross: $bin version"
  "$2" "$bin" version
  echo "cross: $bin drive inspect $(basename "$capture")"
  "$2" "$bin" drive inspect "$capture" >/dev/null
done
echo "cross: both foreign binaries start and read a capture"

# The agent must fit a firmware image: at most 8 MiB stripped on arm64.
limit=$((8 * 1024 * 1024))
size=$(stat -c %s bin/linux-arm64/dcagent)
if [ "$size" -gt "$limit" ]; then
  echo "cross: bin/linux-arm64/dcagent is $size bytes, over the 8 MiB ($limit) budget" >&2
  exit 1
fi
echo "cross: bin/linux-arm64/dcagent is $size bytes (budget $limit)"
