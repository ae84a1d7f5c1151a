#!/usr/bin/env bash
# setup.sh - installs llmflash's build and test dependencies from Debian.
# Idempotent: installs only what is missing. Needs root (or sudo).
set -euo pipefail
pkgs=(build-essential meson ninja-build pkg-config liburing-dev libzstd-dev liblz4-dev libxxhash-dev libpcre2-dev libjansson-dev
      libcriterion-dev libopenblas-dev liblapacke-dev clang libclang-rt-14-dev fio python3-matplotlib python3-jsonschema)
missing=()
for p in "${pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "setup: installing ${missing[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo=sudo
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
echo "setup: dependencies present"
