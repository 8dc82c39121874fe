#!/usr/bin/env bash
# fabric-node/go.sh — the Go toolchain the chosen Fabric ref asks for, at /usr/local/go, used with
# GOTOOLCHAIN=local (never a silent toolchain download). Sources, in this order:
#   1. GO_TARBALL       a go<ver>.linux-<arch>.tar.gz on the build VM (air-gapped builds)
#   2. GO_DOWNLOAD_URL  go.dev, sha256-pinned (GO_SHA256, or the known-version map below)
#   3. Debian <suite>-backports golang-<major.minor>-go, when its minor equals the required one
#      and its patch is not older (backports 1.23.5 serves Fabric v3.0.0 / v2.5.10: go 1.23.1)
#
# Environment (image.yaml `versions`):
#   GO_VERSION        auto = the `go` directive of the Fabric ref's go.mod, or X.Y.Z    (default auto)
#   GO_TARBALL        local Go tarball path                                          (default empty)
#   GO_SHA256         sha256 of GO_TARBALL / the download (default: known-version map)
#   GO_DOWNLOAD_URL   URL of the Go tarball     (default https://go.dev/dl/go<ver>.linux-<arch>.tar.gz)
#   GO_DEBIAN         1 = allow the Debian backports package                         (default 1)
#   DEBIAN_SUITE      Debian release                                                 (default bookworm)
#   DEBIAN_MIRROR     Debian mirror for backports                                    (default http://deb.debian.org/debian)
#   FABRIC_SOURCE, FABRIC_REPO, FABRIC_REF, FABRIC_COMMIT: where the go.mod comes from (see fabric.sh)
#   FABPERF_PHASE     prebuild in bake's native build root; in the build VM, when /opt/fabric/BUILD.json
#                     is there (binaries prebuilt), no Go is installed                (default empty)
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../files/common/lib.sh
. "${FABPERF_FILES:-/tmp/fabperf/files}/common/lib.sh"

GO_VERSION="${GO_VERSION:-auto}"
GO_TARBALL="${GO_TARBALL:-}"
GO_SHA256="${GO_SHA256:-}"
GO_DEBIAN="${GO_DEBIAN:-1}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
GO_ROOT=/usr/local/go
ARCH="$(dpkg --print-architecture)"
# Checksums published on https://go.dev/dl/ for the versions Fabric releases ask for.
declare -A GO_KNOWN_SHA256=(
  [1.23.1-amd64]=49bbb517cfa9eee677e1e7897f7cf9cfdbcf49e05f61984a2789136de359f9bd
)

require_root
# Compile once, bake many: in the build VM, Fabric's binaries were built in bake's native
# build root and unpacked to /opt/fabric; the image needs no Go toolchain then.
if [ "${FABPERF_PHASE:-}" != "prebuild" ] && [ -f /opt/fabric/BUILD.json ]; then
  go_used="$(jq -r .go_version /opt/fabric/BUILD.json)"
  write_image_json go_version="${go_used}" go_required="${GO_VERSION}"
  log "Fabric is prebuilt (compiled natively with ${go_used}): no Go toolchain in this image"
  exit 0
fi
apt_update_once
apt_install make gcc libc6-dev git

if [ "${GO_VERSION}" = "auto" ]; then
  fabric_source
  GO_VERSION="$(awk '$1 == "go" { print $2; exit }' "${FABRIC_SRC_DIR}/go.mod")"
  [ -n "${GO_VERSION}" ] || die "no go directive in ${FABRIC_SRC_DIR}/go.mod (FABRIC_REF=${FABRIC_REF}); set GO_VERSION"
  log "Fabric ${FABRIC_REF} go.mod asks for Go ${GO_VERSION}"
fi
case "${GO_VERSION}" in
  [0-9]*.[0-9]*) ;;
  *) die "GO_VERSION: expected auto or a version like 1.23.1, found '${GO_VERSION}'" ;;
esac
want_mm="$(echo "${GO_VERSION}" | cut -d. -f1,2)"

# go_ok GOBIN : the toolchain has the required major.minor and is not older than GO_VERSION.
go_ok() {
  local have
  [ -x "$1" ] || return 1
  have="$(GOTOOLCHAIN=local "$1" env GOVERSION 2>/dev/null | sed 's/^go//')"
  [ "$(echo "${have}" | cut -d. -f1,2)" = "${want_mm}" ] || return 1
  [ "$(printf '%s\n%s\n' "${GO_VERSION}" "${have}" | sort -V | head -n1)" = "${GO_VERSION}" ]
}

install_tarball() {  # FILE
  rm -rf "${GO_ROOT}"
  tar -C /usr/local -xzf "$1"
  go_ok "${GO_ROOT}/bin/go" || die "$1 does not hold Go ${GO_VERSION} (GO_VERSION)"
}

if go_ok "${GO_ROOT}/bin/go"; then
  log "Go already installed: $("${GO_ROOT}/bin/go" version)"
elif [ -n "${GO_TARBALL}" ]; then
  [ -f "${GO_TARBALL}" ] || die "GO_TARBALL=${GO_TARBALL}: no such file on the build VM"
  verify_sha256 "${GO_TARBALL}" "${GO_SHA256:-${GO_KNOWN_SHA256[${GO_VERSION}-${ARCH}]:-}}"
  install_tarball "${GO_TARBALL}"
  log "Go from GO_TARBALL ${GO_TARBALL}"
else
  installed=""
  sha="${GO_SHA256:-${GO_KNOWN_SHA256[${GO_VERSION}-${ARCH}]:-}}"
  url="${GO_DOWNLOAD_URL:-https://go.dev/dl/go${GO_VERSION}.linux-${ARCH}.tar.gz}"
  if [ -n "${sha}" ]; then
    tarball="/var/tmp/go${GO_VERSION}.linux-${ARCH}.tar.gz"
    if fetch_verified "${url}" "${sha}" "${tarball}"; then
      install_tarball "${tarball}"
      rm -f "${tarball}"
      installed="download ${url}"
    else
      warn "cannot download ${url}; trying Debian backports"
    fi
  else
    log "no sha256 pinned for Go ${GO_VERSION}/${ARCH} (GO_SHA256): not downloading from go.dev"
  fi
  if [ -z "${installed}" ] && [ "${GO_DEBIAN}" = "1" ]; then
    if ! grep -rqsE "(^|[[:space:]])${DEBIAN_SUITE}-backports([[:space:]]|$)" /etc/apt/sources.list /etc/apt/sources.list.d/; then
      echo "deb ${DEBIAN_MIRROR} ${DEBIAN_SUITE}-backports main" >/etc/apt/sources.list.d/fabperf-backports.list
    fi
    apt_update
    pkg="golang-${want_mm}-go"
    if apt-cache show "${pkg}" >/dev/null 2>&1 \
        && apt_install -t "${DEBIAN_SUITE}-backports" "${pkg}" \
        && go_ok "/usr/lib/go-${want_mm}/bin/go"; then
      rm -rf "${GO_ROOT}"
      ln -s "/usr/lib/go-${want_mm}" "${GO_ROOT}"
      installed="debian ${pkg}"
    else
      warn "Debian ${pkg} is missing or older than ${GO_VERSION}"
    fi
  fi
  [ -n "${installed}" ] || die "no Go ${GO_VERSION} (GO_VERSION) available: upload go${GO_VERSION}.linux-${ARCH}.tar.gz and set GO_TARBALL=/tmp/fabperf/files/<dir>/<file> (+ GO_SHA256), or make GO_DOWNLOAD_URL reachable with GO_SHA256 set"
  log "Go from ${installed}"
fi

cat >/etc/profile.d/fabperf-go.sh <<'PROFILE'
# fabperf: the baked Go toolchain; never switch toolchains behind the user's back.
export PATH="/usr/local/go/bin:${PATH}"
export GOTOOLCHAIN=local
PROFILE
go_version="$(GOTOOLCHAIN=local "${GO_ROOT}/bin/go" env GOVERSION)"
write_image_json go_version="${go_version}" go_required="${GO_VERSION}"
log "Go ready: ${go_version} at ${GO_ROOT}"
