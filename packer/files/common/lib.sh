#!/usr/bin/env bash
# Shared helpers for fabperf's provisioning scripts (packer/scripts/**).
# Sourced, never executed: every script does
#   . "${FABPERF_FILES:-/tmp/fabperf/files}/common/lib.sh"
# Packer uploads packer/files/<dir> to /tmp/fabperf/files/<dir> before any script runs.
#
# Variables read here (all optional):
#   FABPERF_FILES      where the files dirs were uploaded        (default /tmp/fabperf/files)
#   FABPERF_LOG_TAG    prefix of log lines                       (default the script name)
#   APT_RETRIES        apt-get network retries                   (default 3)

FABPERF_FILES="${FABPERF_FILES:-/tmp/fabperf/files}"
FABPERF_LOG_TAG="${FABPERF_LOG_TAG:-$(basename "${0}")}"
APT_RETRIES="${APT_RETRIES:-3}"
export DEBIAN_FRONTEND=noninteractive
# npm and node read the system trust store (extra CAs included) through this.
export NODE_EXTRA_CA_CERTS="${NODE_EXTRA_CA_CERTS:-/etc/ssl/certs/ca-certificates.crt}"

log() { printf '[fabperf %s] %s\n' "${FABPERF_LOG_TAG}" "$*" >&2; }
warn() { printf '[fabperf %s] WARNING: %s\n' "${FABPERF_LOG_TAG}" "$*" >&2; }
die() { printf '[fabperf %s] ERROR: %s\n' "${FABPERF_LOG_TAG}" "$*" >&2; exit 1; }

require_root() {
  [ "$(id -u)" -eq 0 ] || die "must run as root (Packer runs scripts with sudo)"
}

# apt_install PKG... : install without recommends, retrying transient network errors.
apt_install() {
  apt-get -o Acquire::Retries="${APT_RETRIES}" install -y -q --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}

# apt_update_once : apt-get update, at most once per script run (apt_update after sources change).
_FABPERF_APT_UPDATED=""
apt_update() {
  apt-get -o Acquire::Retries="${APT_RETRIES}" update -q
  _FABPERF_APT_UPDATED=1
}
apt_update_once() {
  if [ -z "${_FABPERF_APT_UPDATED}" ]; then apt_update; fi
}

# fetch_verified URL SHA256 DEST : download URL to DEST and check its sha256; fail loudly
# naming the variables to set when the host is unreachable or the checksum differs.
fetch_verified() {
  local url="$1" sha="$2" dest="$3" tmp
  [ -n "${sha}" ] || die "no sha256 pinned for ${url}: refusing an unverified download"
  if [ -f "${dest}" ] && echo "${sha}  ${dest}" | sha256sum -c --status; then
    log "already downloaded and verified: ${dest}"
    return 0
  fi
  tmp="${dest}.part"
  if ! curl -fsSL --retry 2 --connect-timeout 15 -o "${tmp}" "${url}"; then
    rm -f "${tmp}"
    return 1
  fi
  if ! echo "${sha}  ${tmp}" | sha256sum -c --status; then
    rm -f "${tmp}"
    die "sha256 mismatch for ${url}: expected ${sha}"
  fi
  mv "${tmp}" "${dest}"
}

# verify_sha256 FILE SHA256 : check a local file when a checksum is given (empty = skip).
verify_sha256() {
  local file="$1" sha="$2"
  [ -z "${sha}" ] && return 0
  echo "${sha}  ${file}" | sha256sum -c --status || die "sha256 mismatch for ${file}: expected ${sha}"
}

# install_file SRC DEST MODE [OWNER] : copy with mode (and owner), creating parent dirs.
install_file() {
  local src="$1" dest="$2" mode="$3" owner="${4:-root:root}"
  [ -f "${src}" ] || die "missing file ${src} (was packer/files uploaded to ${FABPERF_FILES}?)"
  install -D -m "${mode}" -o "${owner%%:*}" -g "${owner##*:}" "${src}" "${dest}"
}

# ensure_system_user NAME HOME : a locked system account with its own group, idempotent.
ensure_system_user() {
  local name="$1" home="$2"
  if ! getent group "${name}" >/dev/null; then
    groupadd --system "${name}"
  fi
  if ! getent passwd "${name}" >/dev/null; then
    useradd --system --gid "${name}" --home-dir "${home}" --no-create-home \
      --shell /usr/sbin/nologin "${name}"
  fi
}

# in_chroot : true when not running under the system's init (a chroot test run), where
# services cannot be started or probed.
in_chroot() {
  [ ! -d /run/systemd/system ]
}

# systemd_reload : daemon-reload when systemd runs (no-op in a chroot).
systemd_reload() {
  if ! in_chroot; then systemctl daemon-reload; fi
}

# service_disable_now UNIT... : disable, and stop when systemd runs.
service_disable_now() {
  systemctl disable "$@" >/dev/null 2>&1 || true
  if ! in_chroot; then systemctl stop "$@" || true; fi
}

# service_enable_now UNIT... : enable, and (re)start when systemd runs.
service_enable_now() {
  systemctl enable "$@"
  if ! in_chroot; then systemctl restart "$@"; fi
}

# install_nodejs MAJOR [npm] : Node.js (and npm when asked: only a script that runs npm needs
#   it, and Debian's npm brings ~300 node-* packages) from Debian; fails unless node is MAJOR.x.
#   Sets NODE_VERSION (e.g. 18.20.4). bookworm has 18.x (security updates in -security).
install_nodejs() {
  apt_update_once
  if [ "${2:-}" = "npm" ]; then apt_install nodejs npm; else apt_install nodejs; fi
  NODE_VERSION="$(node --version | sed 's/^v//')"
  [ "${NODE_VERSION%%.*}" = "$1" ] || die "NODE_MAJOR=$1 but Debian installed Node.js ${NODE_VERSION}"
  export NODE_VERSION
}

# npm_version_of DIR PACKAGE : the version of PACKAGE installed in DIR/node_modules (or empty).
npm_version_of() {
  jq -r '.version // empty' "$1/node_modules/$2/package.json" 2>/dev/null || true
}

# write_image_json KEY=VALUE... : merge string fields into /etc/fabperf/image.json (jq).
write_image_json() {
  local f=/etc/fabperf/image.json tmp kv
  install -d -m 0755 /etc/fabperf
  tmp="$(mktemp)"
  if [ -s "${f}" ]; then cp "${f}" "${tmp}"; else echo '{}' >"${tmp}"; fi
  for kv in "$@"; do
    jq --arg k "${kv%%=*}" --arg v "${kv#*=}" '.[$k] = $v' "${tmp}" >"${tmp}.n"
    mv "${tmp}.n" "${tmp}"
  done
  install -m 0644 "${tmp}" "${f}"
  rm -f "${tmp}"
}

# --- Fabric source (fabric-node: go.sh reads its go.mod, fabric.sh builds it) -------------
# fabric_known_commit REF : the commit a released tag is known to be at (empty if unknown).
#   A source that claims such a tag but is at another commit is refused.
fabric_known_commit() {
  case "$1" in
    v3.0.0) echo 94590aa4332b20350e8aee5572a8cfd29164221c ;;
    v2.5.12) echo af0b647fc99bc529c5788a238dac081d0fa86194 ;;
    *) echo "" ;;
  esac
}

# fabric_source : materialize the Fabric tree at FABRIC_BUILD_DIR once (idempotent) from
#   FABRIC_SOURCE (a directory or a .tar/.tar.gz uploaded by Packer: air-gapped builds) or
#   FABRIC_REPO at FABRIC_REF (git). Sets FABRIC_SRC_DIR and FABRIC_COMMIT (full sha).
# Variables: FABRIC_SOURCE, FABRIC_REPO, FABRIC_REF, FABRIC_COMMIT (needed when the source
#   carries no git metadata), FABRIC_BUILD_DIR (default /var/tmp/fabperf/fabric).
fabric_source() {
  FABRIC_SOURCE="${FABRIC_SOURCE:-}"
  FABRIC_REPO="${FABRIC_REPO:-https://github.com/hyperledger/fabric.git}"
  FABRIC_REF="${FABRIC_REF:-v3.0.0}"
  FABRIC_BUILD_DIR="${FABRIC_BUILD_DIR:-/var/tmp/fabperf/fabric}"
  FABRIC_SRC_DIR="${FABRIC_BUILD_DIR}/src"
  local marker="${FABRIC_BUILD_DIR}/source.id" want commit=""
  want="source=${FABRIC_SOURCE:-git:${FABRIC_REPO}} ref=${FABRIC_REF}"
  if [ -f "${marker}" ] && [ "$(head -n1 "${marker}")" = "${want}" ] && [ -f "${FABRIC_SRC_DIR}/go.mod" ]; then
    FABRIC_COMMIT="$(sed -n 2p "${marker}")"
    export FABRIC_SRC_DIR FABRIC_COMMIT
    return 0
  fi
  rm -rf "${FABRIC_SRC_DIR}"
  install -d -m 0755 "${FABRIC_SRC_DIR}"
  if [ -n "${FABRIC_SOURCE}" ] && [ -d "${FABRIC_SOURCE}" ]; then
    [ -f "${FABRIC_SOURCE}/go.mod" ] || die "FABRIC_SOURCE=${FABRIC_SOURCE} has no go.mod: not a Fabric source tree"
    if command -v git >/dev/null && git -C "${FABRIC_SOURCE}" rev-parse HEAD >/dev/null 2>&1; then
      commit="$(git -C "${FABRIC_SOURCE}" rev-parse HEAD)"
    fi
    tar -C "${FABRIC_SOURCE}" --exclude=./.git --exclude=./build --exclude=./release -cf - . \
      | tar -C "${FABRIC_SRC_DIR}" -xf -
  elif [ -n "${FABRIC_SOURCE}" ] && [ -f "${FABRIC_SOURCE}" ]; then
    verify_sha256 "${FABRIC_SOURCE}" "${FABRIC_SOURCE_SHA256:-}"
    if command -v git >/dev/null; then
      # `git archive` tarballs carry their commit in a pax header.
      commit="$(gzip -dcf "${FABRIC_SOURCE}" | git get-tar-commit-id 2>/dev/null || true)"
    fi
    tar -C "${FABRIC_SRC_DIR}" -xf "${FABRIC_SOURCE}"
    if [ ! -f "${FABRIC_SRC_DIR}/go.mod" ]; then
      local top
      top="$(find "${FABRIC_SRC_DIR}" -mindepth 2 -maxdepth 2 -name go.mod -printf '%h\n' | head -n1)"
      [ -n "${top}" ] || die "FABRIC_SOURCE=${FABRIC_SOURCE}: no go.mod in the tarball"
      find "${top}" -mindepth 1 -maxdepth 1 -exec mv -t "${FABRIC_SRC_DIR}" {} +
      rmdir "${top}"
    fi
  elif [ -n "${FABRIC_SOURCE}" ]; then
    die "FABRIC_SOURCE=${FABRIC_SOURCE}: no such directory or file on the build VM"
  else
    command -v git >/dev/null || { apt_update_once; apt_install git; }
    git -C "${FABRIC_SRC_DIR}" init -q
    git -C "${FABRIC_SRC_DIR}" remote add origin "${FABRIC_REPO}"
    git -C "${FABRIC_SRC_DIR}" -c http.lowSpeedLimit=1000 -c http.lowSpeedTime=60 \
      fetch -q --depth 1 origin "${FABRIC_REF}" \
      || die "cannot fetch ${FABRIC_REF} (FABRIC_REF) from ${FABRIC_REPO} (FABRIC_REPO); for an air-gapped build upload a source tree or tarball and set FABRIC_SOURCE=/tmp/fabperf/files/<name>"
    git -C "${FABRIC_SRC_DIR}" -c advice.detachedHead=false checkout -q FETCH_HEAD
    commit="$(git -C "${FABRIC_SRC_DIR}" rev-parse HEAD)"
  fi
  if [ -n "${FABRIC_COMMIT:-}" ] && [ -n "${commit}" ] && [ "${FABRIC_COMMIT}" != "${commit}" ]; then
    die "FABRIC_COMMIT=${FABRIC_COMMIT} but the source is at ${commit}"
  fi
  local known
  known="$(fabric_known_commit "${FABRIC_REF}")"
  if [ -n "${known}" ] && [ -n "${commit:-${FABRIC_COMMIT:-}}" ] && [ "${commit:-${FABRIC_COMMIT}}" != "${known}" ]; then
    die "FABRIC_REF=${FABRIC_REF} is commit ${known}, but the source (${FABRIC_SOURCE:-git}) is at ${commit:-${FABRIC_COMMIT}}: set FABRIC_REF to what the source really is"
  fi
  FABRIC_COMMIT="${FABRIC_COMMIT:-${commit}}"
  [ -n "${FABRIC_COMMIT}" ] || die "cannot tell the commit of FABRIC_SOURCE=${FABRIC_SOURCE} (no git metadata): set FABRIC_COMMIT to its full sha"
  printf '%s\n%s\n' "${want}" "${FABRIC_COMMIT}" >"${marker}"
  export FABRIC_SRC_DIR FABRIC_COMMIT
  log "Fabric source ${FABRIC_REF} at ${FABRIC_COMMIT} in ${FABRIC_SRC_DIR}"
}
