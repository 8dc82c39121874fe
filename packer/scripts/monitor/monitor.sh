#!/usr/bin/env bash
# monitor/monitor.sh — Prometheus (file_sd targets, admin API for TSDB snapshots), Pushgateway,
# Mosquitto 2 (Caliper's MQTT broker), Grafana with the fabperf datasource and dashboards.
# The four services are installed but NOT enabled: launch writes the file_sd targets and the
# Grafana admin secret through cloud-init first, then enables them (launch.contract.UNITS).
#
# Environment (image.yaml `versions`):
#   GRAFANA_SOURCE               apt | deb | none                                  (default apt)
#                                apt: GRAFANA_APT_REPO at GRAFANA_VERSION; deb: the local GRAFANA_DEB;
#                                none: everything but Grafana (its provisioning files are still baked)
#   GRAFANA_VERSION              grafana package version                            (default 11.3.1)
#   GRAFANA_APT_REPO             Grafana's apt repository                           (default https://apt.grafana.com)
#   GRAFANA_APT_KEY_FINGERPRINT  fingerprint the repository key must have           (default B53AE77BADB630A683046005963FA27710458545)
#   GRAFANA_DEB                  path of a grafana .deb on the build VM (upload it with `files`)  (default empty)
#   GRAFANA_DEB_SHA256           its sha256, checked when set                       (default empty)
#   DASHBOARDS_DIR               uploaded dashboards/ directory                     (default /tmp/fabperf/files/dashboards)
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../files/common/lib.sh
. "${FABPERF_FILES:-/tmp/fabperf/files}/common/lib.sh"

GRAFANA_SOURCE="${GRAFANA_SOURCE:-apt}"
GRAFANA_VERSION="${GRAFANA_VERSION:-11.3.1}"
GRAFANA_APT_REPO="${GRAFANA_APT_REPO:-https://apt.grafana.com}"
GRAFANA_APT_KEY_FINGERPRINT="${GRAFANA_APT_KEY_FINGERPRINT:-B53AE77BADB630A683046005963FA27710458545}"
GRAFANA_DEB="${GRAFANA_DEB:-}"
GRAFANA_DEB_SHA256="${GRAFANA_DEB_SHA256:-}"
DASHBOARDS_DIR="${DASHBOARDS_DIR:-${FABPERF_FILES}/dashboards}"
F="${FABPERF_FILES}/monitor"
SERVICES=(prometheus.service prometheus-pushgateway.service mosquitto.service)

require_root
case "${GRAFANA_SOURCE}" in
  apt|deb|none) ;;
  *) die "GRAFANA_SOURCE: expected apt, deb or none, found '${GRAFANA_SOURCE}'" ;;
esac

# 1. Prometheus, Pushgateway, Mosquitto from Debian.
apt_update_once
apt_install prometheus prometheus-pushgateway mosquitto
install -d -m 0755 /etc/prometheus/file_sd
install_file "${F}/prometheus.yml" /etc/prometheus/prometheus.yml 0644
install_file "${F}/prometheus.default" /etc/default/prometheus 0644
promtool check config /etc/prometheus/prometheus.yml
install_file "${F}/mosquitto.conf" /etc/mosquitto/mosquitto.conf 0644

# 2. Grafana.
install_grafana_apt() {
  local key
  apt_install gnupg
  key="$(mktemp)"
  curl -fsSL --connect-timeout 15 -o "${key}" "${GRAFANA_APT_REPO}/gpg.key" \
    || die "GRAFANA_SOURCE=apt: cannot fetch ${GRAFANA_APT_REPO}/gpg.key. Set GRAFANA_APT_REPO to a reachable mirror, or GRAFANA_SOURCE=deb with GRAFANA_DEB=/path/grafana_${GRAFANA_VERSION}_amd64.deb (uploaded via image.yaml files), or GRAFANA_SOURCE=none"
  gpg --batch --show-keys --with-colons "${key}" | grep -q "^fpr:::::::::${GRAFANA_APT_KEY_FINGERPRINT}:" \
    || die "the key at ${GRAFANA_APT_REPO}/gpg.key does not have fingerprint ${GRAFANA_APT_KEY_FINGERPRINT} (GRAFANA_APT_KEY_FINGERPRINT)"
  install -d -m 0755 /etc/apt/keyrings
  gpg --batch --yes --dearmor -o /etc/apt/keyrings/grafana.gpg "${key}"
  rm -f "${key}"
  echo "deb [signed-by=/etc/apt/keyrings/grafana.gpg] ${GRAFANA_APT_REPO} stable main" >/etc/apt/sources.list.d/grafana.list
  apt_update
  apt_install "grafana=${GRAFANA_VERSION}" \
    || die "grafana=${GRAFANA_VERSION} (GRAFANA_VERSION) is not installable from ${GRAFANA_APT_REPO}"
  apt-mark hold grafana >/dev/null
}
install_grafana_deb() {
  [ -n "${GRAFANA_DEB}" ] || die "GRAFANA_SOURCE=deb needs GRAFANA_DEB=/path/to/grafana.deb"
  [ -f "${GRAFANA_DEB}" ] || die "GRAFANA_DEB=${GRAFANA_DEB}: no such file on the build VM (add it to the image's files list)"
  verify_sha256 "${GRAFANA_DEB}" "${GRAFANA_DEB_SHA256}"
  apt_install "$(readlink -f "${GRAFANA_DEB}")"
  apt-mark hold grafana >/dev/null
}
case "${GRAFANA_SOURCE}" in
  apt) install_grafana_apt ;;
  deb) install_grafana_deb ;;
  none)
    warn "************************************************************************"
    warn "GRAFANA_SOURCE=none: Grafana is NOT installed in this monitor image."
    warn "Prometheus, Pushgateway and Mosquitto are; the Grafana provisioning files"
    warn "and dashboards are baked so a later Grafana picks them up."
    warn "************************************************************************" ;;
esac

# 3. Grafana provisioning (datasource uid fabperf-prometheus) and the dashboards.
[ -d "${DASHBOARDS_DIR}" ] || die "DASHBOARDS_DIR=${DASHBOARDS_DIR} missing (image.yaml files must list dashboards)"
install_file "${DASHBOARDS_DIR}/provisioning/datasources/fabperf.yaml" /etc/grafana/provisioning/datasources/fabperf.yaml 0644
install_file "${DASHBOARDS_DIR}/provisioning/dashboards/fabperf.yaml" /etc/grafana/provisioning/dashboards/fabperf.yaml 0644
install -d -m 0755 /var/lib/grafana/dashboards/fabperf
for d in "${DASHBOARDS_DIR}"/*.json; do
  jq -e . "${d}" >/dev/null || die "dashboard ${d} is not valid JSON"
  install -m 0644 "${d}" /var/lib/grafana/dashboards/fabperf/
done
install_file "${F}/grafana-server-fabperf.conf" /etc/systemd/system/grafana-server.service.d/fabperf.conf 0644
install -d -m 0750 /etc/fabperf/monitor
if getent group grafana >/dev/null; then
  chgrp -R grafana /etc/grafana/provisioning
  SERVICES+=(grafana-server.service)
fi

# 4. Installed, not enabled, not running, no build-time data (packages start their services).
systemd_reload
service_disable_now "${SERVICES[@]}"
rm -rf /var/lib/prometheus/metrics2/* /var/lib/mosquitto/*.db

grafana_version="$(dpkg-query -W -f '${Version}' grafana 2>/dev/null || echo none)"
write_image_json grafana_source="${GRAFANA_SOURCE}" grafana="${grafana_version}" \
  prometheus="$(dpkg-query -W -f '${Version}' prometheus)" \
  pushgateway="$(dpkg-query -W -f '${Version}' prometheus-pushgateway)" \
  mosquitto="$(dpkg-query -W -f '${Version}' mosquitto)"
log "monitor done (grafana: ${grafana_version}, source ${GRAFANA_SOURCE})"
