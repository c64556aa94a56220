#!/usr/bin/env bash
# Installs what the tests and the demo need from Debian, only when missing,
# and says what it installs. Go modules come through `go mod download`.
set -euo pipefail
want=(swtpm swtpm-tools softhsm2 rsyslog rsyslog-gnutls qemu-user-static smartmontools iproute2 openssh-server openssl proftpd-core proftpd-mod-crypto)
missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "deps: installing Debian packages: ${missing[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
else
  echo "deps: Debian packages present: ${want[*]}"
fi
echo "deps: downloading Go modules (go mod download)"
go mod download
