#!/bin/sh
# bootstrap.sh: install everything warden needs to build and test, idempotently.
#
# - Debian packages (build deps and test deps) are installed only when missing,
#   so a second run does no network I/O.
# - raft 0.22.1 (the maintained canonical/raft continuation, see issue #2) is
#   built once as a static library into $WARDEN_DEPS_DIR (default
#   /var/cache/warden-deps), outside the clone, so CI reruns are quick.
#   Bookworm's libraft-dev 0.15.0 has the Figure-8 commit-rule bug
#   (canonical/raft #220) and is never used.
# - Every scripts/patches/raft-0.22.1-*.patch is applied (in C-locale name
#   order, patch -p1 from the source root) before the build. The install
#   carries a stamp, $RAFT_PREFIX/.patches.sha256, holding the sha256 of
#   those patches concatenated in that order; a missing or different stamp
#   means a rebuild. The stamp is written last, so an interrupted build is
#   redone on the next run. docs/consensus.md lists what each patch fixes.
set -eu

DEPS_DIR=${WARDEN_DEPS_DIR:-/var/cache/warden-deps}
RAFT_VERSION=0.22.1
RAFT_DEB_VERSION=0.22.1-1
RAFT_PREFIX="$DEPS_DIR/raft-$RAFT_VERSION"
RAFT_STAMP="$RAFT_PREFIX/.patches.sha256"
PATCH_DIR=$(cd "$(dirname "$0")" && pwd)/patches

PKGS="build-essential cmake pkg-config libuv1-dev libnghttp2-dev libssl-dev \
liblmdb-dev lmdb-utils libprotobuf-c-dev protobuf-c-compiler protobuf-compiler \
python3-grpcio python3-protobuf python3-h2 python3-cryptography nghttp2-client openssl iptables socat faketime \
autoconf automake libtool liblz4-dev dpkg-dev patch clang libclang-rt-14-dev"

log() { printf 'bootstrap: %s\n' "$*" >&2; }

SUDO=
if [ "$(id -u)" != 0 ]; then SUDO=sudo; fi

missing=
for p in $PKGS; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed'; then
        missing="$missing $p"
    fi
done
if [ -n "$missing" ]; then
    log "installing:$missing"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Our raft patches, in the order they are applied. The list is word-split
# below, so the clone path must not contain spaces.
patches=$(LC_ALL=C ls -1 "$PATCH_DIR"/raft-"$RAFT_VERSION"-*.patch 2>/dev/null || true)
# sha256 of the patches concatenated in that order (of nothing if none).
# shellcheck disable=SC2086 # word splitting of $patches is intended
patch_sum=$( { [ -z "$patches" ] || cat $patches; } | sha256sum | cut -d' ' -f1)

# Prefer a system libraft that already has the commit-rule fix (>= 0.17.1).
if pkg-config --atleast-version=0.17.1 raft 2>/dev/null; then
    log "using system raft $(pkg-config --modversion raft)"
    if [ -n "$patches" ]; then
        log "WARNING: system raft is unpatched; these fixes are missing:"
        for p in $patches; do log "WARNING:   $(basename "$p")"; done
    fi
    exit 0
fi

if [ -f "$RAFT_PREFIX/lib/libraft.a" ] && [ -f "$RAFT_PREFIX/lib/pkgconfig/raft.pc" ] &&
   [ "$(head -n 1 "$RAFT_STAMP" 2>/dev/null)" = "$patch_sum" ]; then
    exit 0
fi

log "building raft $RAFT_VERSION (patch set ${patch_sum%"${patch_sum#????????????}"}) into $RAFT_PREFIX"
$SUDO mkdir -p "$DEPS_DIR"
work=$(mktemp -d "$DEPS_DIR/raft-src.XXXXXX")
srclist=/etc/apt/sources.list.d/warden-trixie-src.sources
cleanup() {
    $SUDO rm -f "$srclist"
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

# Mirror URI comes from the machine's own apt configuration; no host name is
# written into the repository.
uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources)
[ -n "$uri" ] || { log "no URIs: line in debian.sources"; exit 1; }
cat > "$srclist.tmp" <<SRC
Types: deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
$SUDO mv "$srclist.tmp" "$srclist"
$SUDO apt-get update -qq -o Dir::Etc::sourcelist="$srclist" -o Dir::Etc::sourceparts=- \
    -o APT::Get::List-Cleanup=0
(cd "$work" && apt-get source -qq --download-only "raft=$RAFT_DEB_VERSION" >/dev/null 2>&1 || \
    apt-get source -qq "raft=$RAFT_DEB_VERSION")
$SUDO rm -f "$srclist"
$SUDO apt-get update -qq >/dev/null 2>&1 || true

cd "$work"
if [ ! -d "raft-$RAFT_VERSION" ]; then
    dpkg-source -x --skip-patches raft_$RAFT_DEB_VERSION.dsc "raft-$RAFT_VERSION" >/dev/null
fi
cd "raft-$RAFT_VERSION"
for p in $patches; do
    log "applying $(basename "$p")"
    patch -p1 --batch --forward --quiet < "$p" ||
        { log "$(basename "$p") does not apply to raft $RAFT_VERSION"; exit 1; }
done
autoreconf -i >/dev/null 2>&1
./configure -q --prefix="$RAFT_PREFIX" --enable-static --disable-shared \
    --with-pic --enable-uv --enable-lz4 --disable-example --disable-benchmark >/dev/null
make -s -j"$(nproc)" >/dev/null
# Replace the old install as a whole, so no file of a previous patch set
# survives; the stamp goes last and marks the install complete.
$SUDO rm -rf "$RAFT_PREFIX"
$SUDO make -s install >/dev/null
{ echo "$patch_sum"; for p in $patches; do basename "$p"; done; } |
    $SUDO tee "$RAFT_STAMP" >/dev/null
log "raft $RAFT_VERSION installed in $RAFT_PREFIX"
