#!/usr/bin/env bash
# common/cleanup.sh — last provisioning script of every image: the hygiene that can happen while
# Packer is still connected, and the installation of fabperf-seal, which Packer's shutdown_command
# (`sudo /usr/local/sbin/fabperf-seal`) runs to remove host keys, the build user, machine-id and
# cloud-init state before powering off.
#
# Environment:
#   REMOVE_EXTRA_CA_CERTS  1 = remove the CA certificates base.sh added from FABPERF_CA_DIR
#                          (default 0: keep them, the image then trusts the build's proxy CA)
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../files/common/lib.sh
. "${FABPERF_FILES:-/tmp/fabperf/files}/common/lib.sh"

REMOVE_EXTRA_CA_CERTS="${REMOVE_EXTRA_CA_CERTS:-0}"
EXTRA_CA_DEST=/usr/local/share/ca-certificates/fabperf-extra

require_root
install_file "${FABPERF_FILES}/common/fabperf-seal" /usr/local/sbin/fabperf-seal 0755

apt-get autoremove -y -q --purge
apt-get clean
rm -rf /var/lib/apt/lists/*
# Build caches that only cost space in the image.
rm -rf /root/.npm /root/.cache /root/go /home/*/.npm /home/*/.cache
# Logs written during the build say nothing about an instance.
find /var/log -type f \( -name '*.gz' -o -name '*.[0-9]' -o -name '*.old' \) -delete
find /var/log -type f -exec truncate -s 0 {} +

if [ "${REMOVE_EXTRA_CA_CERTS}" = "1" ] && [ -d "${EXTRA_CA_DEST}" ]; then
  rm -rf "${EXTRA_CA_DEST}"
  update-ca-certificates --fresh >/dev/null
  log "removed the extra CA certificates from the trust store"
fi
log "cleanup done; fabperf-seal installed at /usr/local/sbin/fabperf-seal"
