#!/bin/sh
# dev.sh - build warden and run a dev node: `wardend --dev` on 127.0.0.1:7443
# with its data (and generated dev certificates) in ./warden-data.
# Extra arguments are passed to wardend (e.g. --data-dir DIR, --listen ADDR).
set -eu
cd "$(dirname "$0")/.."
sh scripts/bootstrap.sh
cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$(nproc)" --target wardend wardenctl
exec ./build/wardend --dev "$@"
