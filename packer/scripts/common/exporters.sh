#!/usr/bin/env bash
# common/exporters.sh — node_exporter (:9100) and process-exporter (:9256) from Debian, with
# process groups peer, orderer, chaincode and caliper so the monitor sees Fabric's and the
# load generator's own CPU and memory. Both are enabled: they carry no per-environment data.
#
# Environment:
#   NODE_EXPORTER_PACKAGE      Debian package of node_exporter     (default prometheus-node-exporter)
#   PROCESS_EXPORTER_PACKAGE   Debian package of process-exporter  (default prometheus-process-exporter)
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../files/common/lib.sh
. "${FABPERF_FILES:-/tmp/fabperf/files}/common/lib.sh"

NODE_EXPORTER_PACKAGE="${NODE_EXPORTER_PACKAGE:-prometheus-node-exporter}"
PROCESS_EXPORTER_PACKAGE="${PROCESS_EXPORTER_PACKAGE:-prometheus-process-exporter}"
F="${FABPERF_FILES}/common"

require_root
apt_update_once
apt_install "${NODE_EXPORTER_PACKAGE}" "${PROCESS_EXPORTER_PACKAGE}"

install_file "${F}/process-exporter.yml" /etc/prometheus/process-exporter.yml 0644
install_file "${F}/prometheus-process-exporter.default" /etc/default/prometheus-process-exporter 0644
install_file "${F}/prometheus-node-exporter.default" /etc/default/prometheus-node-exporter 0644

systemd_reload
service_enable_now prometheus-node-exporter.service prometheus-process-exporter.service
write_image_json \
  node_exporter="$(dpkg-query -W -f '${Version}' "${NODE_EXPORTER_PACKAGE}")" \
  process_exporter="$(dpkg-query -W -f '${Version}' "${PROCESS_EXPORTER_PACKAGE}")"
log "exporters installed and enabled"
