#!/usr/bin/env bash
# fabric-node/fabric.sh — Hyperledger Fabric built from source with the Go from go.sh:
# peer orderer osnadmin configtxgen configtxlator discover via Fabric's own Makefile (version
# metadata: Version from the Makefile, CommitSHA = the short commit) with -mod=vendor, to
# /opt/fabric/bin; sampleconfig core.yaml/orderer.yaml to /etc/hyperledger/fabric; the CCaaS
# external builder at /opt/hyperledger/ccaas_builder/bin (where sampleconfig core.yaml expects
# it); units fabric-peer/fabric-orderer (installed, NOT enabled) and fabric-chaincode@;
# /etc/fabperf/image.json with ref, commit, Go version and `peer version`.
#
# Environment (image.yaml `versions`):
#   FABRIC_REPO     git repository                          (default https://github.com/hyperledger/fabric.git)
#   FABRIC_REF      tag, branch or commit                   (default v3.0.0)
#   FABRIC_SOURCE   a source dir or tarball on the build VM instead of git, e.g.
#                   /tmp/fabperf/files/fabric-src (air-gapped builds)          (default empty = git)
#   FABRIC_SOURCE_SHA256  sha256 of a FABRIC_SOURCE tarball, checked when set  (default empty)
#   FABRIC_COMMIT   full commit sha, required when FABRIC_SOURCE has no git metadata (default empty)
#   FABRIC_BINARIES binaries to build                       (default "peer orderer osnadmin configtxgen configtxlator discover")
#   CCAAS_BUILDER   required | optional: fail, or warn loudly, when the CCaaS builder's Go
#                   modules (not vendored by Fabric) cannot be had    (default required)
#   GOPROXY         module proxy for the CCaaS builder's three modules (default https://proxy.golang.org)
#                   fallback: Debian golang-github-otiai10-copy-dev / golang-github-pkg-errors-dev (GOPATH build)
#   FABPERF_PHASE   prebuild = running in bake's native build root (bake.prebuild), where the
#                   compile happens once; in the build VM the binaries it packed are found in
#                   /opt/fabric (BUILD.json names the commit, Go and binaries) and not rebuilt
#                                                                                     (default empty)
# A tag whose commit is known (FABRIC_KNOWN_COMMITS in lib.sh) must be at that commit.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../files/common/lib.sh
. "${FABPERF_FILES:-/tmp/fabperf/files}/common/lib.sh"

FABRIC_BINARIES="${FABRIC_BINARIES:-peer orderer osnadmin configtxgen configtxlator discover}"
CCAAS_BUILDER="${CCAAS_BUILDER:-required}"
FABRIC_REF="${FABRIC_REF:-v3.0.0}"
FABRIC_REPO="${FABRIC_REPO:-https://github.com/hyperledger/fabric.git}"
GOPROXY="${GOPROXY:-https://proxy.golang.org}"
FABRIC_BIN=/opt/fabric/bin                  # launch.contract.FABRIC_BIN
FABRIC_CFG=/etc/hyperledger/fabric          # launch.contract.FABRIC_CFG_PATH
CCAAS_DIR=/opt/hyperledger/ccaas_builder    # launch.contract.CCAAS_BUILDER
FABRIC_DATA=/var/hyperledger/production     # launch.contract.FABRIC_DATA
F="${FABPERF_FILES}/fabric-node"
GO=/usr/local/go/bin/go

require_root
case "${CCAAS_BUILDER}" in required|optional) ;; *) die "CCAAS_BUILDER: expected required or optional, found '${CCAAS_BUILDER}'" ;; esac
BUILD_JSON="${FABRIC_BIN%/bin}/BUILD.json"      # /opt/fabric/BUILD.json

# prebuilt_ok : /opt/fabric holds binaries of the wanted ref/commit (bake's native build root
# made them; the build VM unpacked them), so nothing is compiled here.
prebuilt_ok() {
  local want_commit b
  [ -f "${BUILD_JSON}" ] || return 1
  [ "$(jq -r .fabric_ref "${BUILD_JSON}")" = "${FABRIC_REF:-v3.0.0}" ] || return 1
  [ "$(jq -r .binaries "${BUILD_JSON}")" = "${FABRIC_BINARIES}" ] || return 1
  want_commit="${FABRIC_COMMIT:-$(fabric_known_commit "${FABRIC_REF:-v3.0.0}")}"
  if [ -n "${want_commit}" ] && [ "$(jq -r .fabric_commit "${BUILD_JSON}")" != "${want_commit}" ]; then
    return 1
  fi
  for b in ${FABRIC_BINARIES}; do [ -x "${FABRIC_BIN}/${b}" ] || return 1; done
  [ -f "${FABRIC_CFG}/core.yaml" ]
}

if [ "${FABPERF_PHASE:-}" != "prebuild" ] && prebuilt_ok; then
  FABRIC_COMMIT="$(jq -r .fabric_commit "${BUILD_JSON}")"
  short="${FABRIC_COMMIT:0:7}"
  fabric_version="$(jq -r .fabric_version "${BUILD_JSON}")"
  go_version="$(jq -r .go_version "${BUILD_JSON}")"
  ccaas_how="$(jq -r .ccaas_builder "${BUILD_JSON}")"
  log "Fabric ${fabric_version} (${FABRIC_REF:-v3.0.0} @ ${short}) prebuilt natively with ${go_version}: not compiling here"
else
if [ -f "${BUILD_JSON}" ] && [ "${FABPERF_PHASE:-}" != "prebuild" ]; then
  die "the prebuilt Fabric in /opt/fabric ($(jq -c '{fabric_ref, fabric_commit, binaries}' "${BUILD_JSON}")) does not match FABRIC_REF=${FABRIC_REF} FABRIC_COMMIT=${FABRIC_COMMIT:-} FABRIC_BINARIES=${FABRIC_BINARIES}"
fi
[ -x "${GO}" ] || die "no Go at ${GO}: run fabric-node/go.sh first"
fabric_source
short="${FABRIC_COMMIT:0:7}"
export PATH="/usr/local/go/bin:${PATH}" GOTOOLCHAIN=local GOFLAGS=-mod=vendor \
  GOPATH=/var/tmp/fabperf/gopath GOCACHE=/var/tmp/fabperf/gocache
fabric_version="$(sed -n 's/^FABRIC_VER ?= *//p' "${FABRIC_SRC_DIR}/Makefile" | head -n1)"
go_version="$("${GO}" env GOVERSION)"

# 1. The binaries, with Fabric's Makefile (same ldflags as a release: metadata.Version/CommitSHA).
log "compiling ${FABRIC_BINARIES} with ${go_version}"
t0=$(date +%s)
# A failing compile says so on its own line and exits 86, so that `launch bisect`
# (launch/compare/bisect.py COMPILE_FAILED) skips the commit; every other failure of a
# bake (disk, network, a VM) stops the bisect instead of being taken for "does not build".
# shellcheck disable=SC2086 # FABRIC_BINARIES is a list
if ! ( cd "${FABRIC_SRC_DIR}" && make EXTRA_VERSION="${short}" ${FABRIC_BINARIES} ); then
  printf 'fabperf: FABRIC COMPILE FAILED: make %s at %s\n' "${FABRIC_BINARIES}" "${short}" >&2
  exit 86
fi
log "compiled in $(( $(date +%s) - t0 )) s"
install -d -m 0755 "${FABRIC_BIN}"
for b in ${FABRIC_BINARIES}; do
  install -m 0755 "${FABRIC_SRC_DIR}/build/bin/${b}" "${FABRIC_BIN}/${b}"
done

# 2. Default configuration (cloud-init overrides per node through CORE_*/ORDERER_* env).
install -d -m 0755 "${FABRIC_CFG}"
for y in core.yaml orderer.yaml configtx.yaml; do
  install -m 0644 "${FABRIC_SRC_DIR}/sampleconfig/${y}" "${FABRIC_CFG}/${y}"
done
grep -q "${CCAAS_DIR}" "${FABRIC_CFG}/core.yaml" \
  || warn "sampleconfig core.yaml of ${FABRIC_REF} does not list ${CCAAS_DIR} as an external builder"

# 3. The CCaaS external builder: its module is not vendored by Fabric.
ccaas_out="$(mktemp -d)"
ccaas_src="${FABRIC_SRC_DIR}/ccaas_builder"
ccaas_how=""
if ( cd "${ccaas_src}" && GOFLAGS=-mod=mod GOPROXY="${GOPROXY}" timeout 300 \
       "${GO}" build -buildvcs=false -o "${ccaas_out}/" ./cmd/detect ./cmd/build ./cmd/release ); then
  ccaas_how="modules from ${GOPROXY}"
else
  warn "cannot fetch the CCaaS builder's modules from GOPROXY=${GOPROXY}; trying Debian's Go library packages"
  if apt_install golang-github-otiai10-copy-dev golang-github-pkg-errors-dev; then
    gopath="$(mktemp -d)"
    install -d "${gopath}/src/github.com/hyperledger/fabric"
    cp -a "${ccaas_src}" "${gopath}/src/github.com/hyperledger/fabric/ccaas_builder"
    if ( cd "${gopath}/src/github.com/hyperledger/fabric/ccaas_builder" \
           && GO111MODULE=off GOFLAGS='' GOPATH="${gopath}:/usr/share/gocode" \
              "${GO}" build -o "${ccaas_out}/" ./cmd/detect ./cmd/build ./cmd/release ); then
      ccaas_how="GOPATH build with Debian golang-github-otiai10-copy-dev $(dpkg-query -W -f '${Version}' golang-github-otiai10-copy-dev), golang-github-pkg-errors-dev $(dpkg-query -W -f '${Version}' golang-github-pkg-errors-dev)"
    fi
    rm -rf "${gopath}"
    # build-only sources: not part of the image
    apt-get purge -y -q golang-github-otiai10-copy-dev golang-github-pkg-errors-dev >/dev/null
  fi
fi
if [ -n "${ccaas_how}" ]; then
  install -d -m 0755 "${CCAAS_DIR}/bin"
  for b in detect build release; do install -m 0755 "${ccaas_out}/${b}" "${CCAAS_DIR}/bin/${b}"; done
  log "CCaaS builder installed at ${CCAAS_DIR}/bin (${ccaas_how})"
elif [ "${CCAAS_BUILDER}" = "required" ]; then
  die "the CCaaS builder (ccaas_builder: github.com/otiai10/copy, github.com/pkg/errors) could not be built: make GOPROXY reachable or the Debian golang-github-* packages installable, or set CCAAS_BUILDER=optional"
else
  warn "************************************************************************"
  warn "CCAAS_BUILDER=optional: NO CCaaS builder in this image. Peers cannot run"
  warn "chaincode-as-a-service until ${CCAAS_DIR}/bin/{detect,build,release} exist."
  warn "************************************************************************"
  ccaas_how="absent"
fi
rm -rf "${ccaas_out}"
jq -n --arg ref "${FABRIC_REF}" --arg commit "${FABRIC_COMMIT}" --arg ver "${fabric_version}" \
  --arg go "${go_version}" --arg bins "${FABRIC_BINARIES}" --arg ccaas "${ccaas_how}" \
  --arg arch "$(dpkg --print-architecture)" \
  '{fabric_ref: $ref, fabric_commit: $commit, fabric_version: $ver, go_version: $go,
    binaries: $bins, ccaas_builder: $ccaas, arch: $arch}' >"${BUILD_JSON}"
chmod 0644 "${BUILD_JSON}"
# The build tree and caches are ~1 GB that an image does not need (the native build root
# keeps them: a rebuild there is incremental).
if [ "${FABPERF_PHASE:-}" != "prebuild" ]; then
  rm -rf "${FABRIC_BUILD_DIR}" /var/tmp/fabperf/gocache /var/tmp/fabperf/gopath
fi
fi
peer_version="$("${FABRIC_BIN}/peer" version)"
printf '%s\n' "${peer_version}" | grep -q "Commit SHA: ${short}" \
  || die "peer version does not report commit ${short}: ${peer_version}"
log "peer: $(printf '%s' "${peer_version}" | tr '\n' ' ')"

# 4. The fabric user, data directory, units (installed, NOT enabled: cloud-init picks the role).
ensure_system_user fabric "${FABRIC_DATA}"
install -d -m 0750 -o fabric -g fabric "${FABRIC_DATA}"
install -d -m 0755 /etc/fabperf
for u in fabric-peer.service fabric-orderer.service fabric-chaincode@.service fabperf-bootstrap.service; do
  install_file "${F}/${u}" "/etc/systemd/system/${u}" 0644
done
# The channel bootstrap job (started by cloud-init on the bootstrap node only).
install_file "${F}/fabperf-bootstrap" /usr/local/bin/fabperf-bootstrap 0755
systemd_reload
service_disable_now fabric-peer.service fabric-orderer.service fabperf-bootstrap.service

# 5. What this image was built from.
write_image_json fabric_repo="${FABRIC_REPO}" fabric_ref="${FABRIC_REF}" \
  fabric_source="${FABRIC_SOURCE:-git}" fabric_commit="${FABRIC_COMMIT}" fabric_commit_short="${short}" \
  fabric_version="${fabric_version}" go_version="${go_version}" \
  peer_version="${peer_version}" ccaas_builder="${ccaas_how}"
log "Fabric ${fabric_version} (${FABRIC_REF} @ ${short}) installed"
