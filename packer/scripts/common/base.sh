#!/usr/bin/env bash
# common/base.sh — first script of every fabperf image: trust store, apt sources, base
# packages, time sync, performance tuning, the fabperf node programs.
#
# Environment (Packer passes the image's `versions` plus FABPERF_*):
#   FABPERF_IMAGE          image name (fabric-node, caliper-worker, monitor)       (required)
#   FABPERF_PROVIDER       qemu | aws | openstack                                  (default unknown)
#   FABPERF_FINGERPRINT    the image fingerprint computed by bake                  (default unknown)
#   FABPERF_CA_DIR         extra CA certificates (*.crt, PEM) to trust during and  (default /tmp/fabperf/ca)
#                          after the build; cleanup.sh removes them with REMOVE_EXTRA_CA_CERTS=1
#   DEBIAN_SUITE           Debian release of the base image                        (default bookworm)
#   DEBIAN_MIRROR          Debian archive mirror                                   (default http://deb.debian.org/debian)
#   DEBIAN_SECURITY_MIRROR Debian security mirror                                  (default http://deb.debian.org/debian-security)
#   TIME_SYNC              chrony | timesyncd                                      (default chrony)
#   EXTRA_PACKAGES         more Debian packages, space separated                   (default empty)
set -euo pipefail
FABPERF_LOG_TAG=base
# shellcheck source=SCRIPTDIR/../../files/common/lib.sh
. "${FABPERF_FILES:-/tmp/fabperf/files}/common/lib.sh"

FABPERF_IMAGE="${FABPERF_IMAGE:?FABPERF_IMAGE must name the image being baked}"
FABPERF_PROVIDER="${FABPERF_PROVIDER:-unknown}"
FABPERF_FINGERPRINT="${FABPERF_FINGERPRINT:-unknown}"
FABPERF_CA_DIR="${FABPERF_CA_DIR:-/tmp/fabperf/ca}"
DEBIAN_SUITE="${DEBIAN_SUITE:-bookworm}"
DEBIAN_MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
DEBIAN_SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
TIME_SYNC="${TIME_SYNC:-chrony}"
EXTRA_PACKAGES="${EXTRA_PACKAGES:-}"
EXTRA_CA_DEST=/usr/local/share/ca-certificates/fabperf-extra

require_root

# 1. Extra CA certificates first: everything after may go through a TLS-intercepting proxy.
shopt -s nullglob
cas=("${FABPERF_CA_DIR}"/*.crt)
shopt -u nullglob
if [ "${#cas[@]}" -gt 0 ]; then
  if ! command -v update-ca-certificates >/dev/null; then
    apt_update_once
    apt_install ca-certificates
  fi
  install -d -m 0755 "${EXTRA_CA_DEST}"
  for ca in "${cas[@]}"; do
    grep -q 'BEGIN CERTIFICATE' "${ca}" || die "FABPERF_CA_DIR: ${ca} is not a PEM certificate"
    install -m 0644 "${ca}" "${EXTRA_CA_DEST}/$(basename "${ca}")"
  done
  update-ca-certificates
  log "trusted ${#cas[@]} extra CA certificate(s) from ${FABPERF_CA_DIR}"
fi

# 2. apt sources: the security and updates suites (nodejs 18.20 comes from -security).
sources_have() { grep -rqsE "(^|[[:space:]])$1([[:space:]]|$)" /etc/apt/sources.list /etc/apt/sources.list.d/; }
if ! sources_have "${DEBIAN_SUITE}-security"; then
  echo "deb ${DEBIAN_SECURITY_MIRROR} ${DEBIAN_SUITE}-security main" >/etc/apt/sources.list.d/fabperf-security.list
fi
if ! sources_have "${DEBIAN_SUITE}-updates"; then
  echo "deb ${DEBIAN_MIRROR} ${DEBIAN_SUITE}-updates main" >/etc/apt/sources.list.d/fabperf-updates.list
fi
# Never pull recommends into an image (they double its size).
cat >/etc/apt/apt.conf.d/60fabperf-no-recommends <<'APT'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
APT

# 3. Base packages.
apt_update
case "${TIME_SYNC}" in
  chrony) timesync_pkg=chrony timesync_unit=chrony.service ;;
  timesyncd) timesync_pkg=systemd-timesyncd timesync_unit=systemd-timesyncd.service ;;
  *) die "TIME_SYNC: expected chrony or timesyncd, found '${TIME_SYNC}'" ;;
esac
# shellcheck disable=SC2086 # EXTRA_PACKAGES is a space-separated list on purpose
apt_install ca-certificates curl jq procps iproute2 less sudo openssh-server \
  "${timesync_pkg}" ${EXTRA_PACKAGES}
systemctl enable "${timesync_unit}"

# 4. Performance tuning: sysctl, fd limits for sessions and services.
F="${FABPERF_FILES}/common"
install_file "${F}/60-fabperf-sysctl.conf" /etc/sysctl.d/60-fabperf.conf 0644
install_file "${F}/60-fabperf-limits.conf" /etc/security/limits.d/60-fabperf.conf 0644
install_file "${F}/60-fabperf-systemd.conf" /etc/systemd/system.conf.d/60-fabperf.conf 0644
if ! in_chroot; then sysctl --system >/dev/null; fi   # in a chroot this would tune the host

# 5. fabperf programs and directories shared by all images.
install_file "${F}/fabperf-node-ready" /usr/local/bin/fabperf-node-ready 0755
install_file "${F}/fabperf-keyscan" /usr/local/sbin/fabperf-keyscan 0755
install_file "${F}/private-key-allowlist" /etc/fabperf/private-key-allowlist 0644
install_file "${F}/fabperf-ssh-hostkeys.service" /etc/systemd/system/fabperf-ssh-hostkeys.service 0644
systemctl enable fabperf-ssh-hostkeys.service
install -d -m 0755 /etc/fabperf /var/lib/fabperf /opt/fabperf
write_image_json image="${FABPERF_IMAGE}" provider="${FABPERF_PROVIDER}" \
  fingerprint="${FABPERF_FINGERPRINT}" debian_suite="${DEBIAN_SUITE}" \
  built_at="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
systemd_reload
log "base done for ${FABPERF_IMAGE} (${FABPERF_PROVIDER})"
