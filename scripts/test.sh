#!/bin/sh
# test.sh - the whole test suite, from a fresh Debian 12 machine (as root).
#   1. bootstrap: packages + raft 0.22.1 (cached outside the clone)
#   2. release build with -Werror; unit tests
#   3. ASan+UBSan build; unit tests again
#   4. integration tests: real wardend processes on 127.0.0.x, driven by
#      Debian's python3-grpcio, nghttp2's h2load and raw HTTP/2 bytes
#   5. the Jepsen-style short suite (tests/jepsen/run-ci.sh)
set -eu
cd "$(dirname "$0")/.."
JOBS=${JOBS:-$(nproc)}

sh scripts/bootstrap.sh

cmake -S . -B build -DWARDEN_WERROR=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
cmake --build build -j"$JOBS"
ctest --test-dir build -L unit --output-on-failure -j"$JOBS"

cmake -S . -B build-asan -DWARDEN_WERROR=ON -DWARDEN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug >/dev/null
cmake --build build-asan -j"$JOBS"
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    ctest --test-dir build-asan -L unit --output-on-failure -j"$JOBS"

ctest --test-dir build -L integration --output-on-failure
ctest --test-dir build -L jepsen --output-on-failure
echo "test.sh: all tests passed"
