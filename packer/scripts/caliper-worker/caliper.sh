#!/usr/bin/env bash
# caliper-worker/caliper.sh — Node.js from Debian, @hyperledger/caliper-cli pinned and bound to
# Fabric at bake time in /opt/fabperf/caliper, fabperf's workload modules, and the
# caliper-worker@.service template (remote workers over MQTT; configured by cloud-init).
#
# Environment (image.yaml `versions`):
#   NODE_MAJOR        Node.js major version the image must have       (default 18)
#   NODE_MIN_VERSION  minimum Node.js the pinned Caliper declares     (default 18.19.0, Caliper 0.6.0 engines)
#   CALIPER_VERSION   @hyperledger/caliper-cli version                (default 0.6.0)
#   CALIPER_BIND_SUT  `caliper bind --caliper-bind-sut` value         (default fabric:fabric-gateway)
#   NPM_REGISTRY      npm registry URL                                (default https://registry.npmjs.org/)
# npm verifies every tarball against the registry's integrity hash (sha512) and records it in
# /opt/fabperf/caliper/package-lock.json, which stays in the image as the exact dependency set.
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../files/common/lib.sh
. "${FABPERF_FILES:-/tmp/fabperf/files}/common/lib.sh"

NODE_MAJOR="${NODE_MAJOR:-18}"
NODE_MIN_VERSION="${NODE_MIN_VERSION:-18.19.0}"
CALIPER_VERSION="${CALIPER_VERSION:-0.6.0}"
CALIPER_BIND_SUT="${CALIPER_BIND_SUT:-fabric:fabric-gateway}"
NPM_REGISTRY="${NPM_REGISTRY:-https://registry.npmjs.org/}"
WORKSPACE=/opt/fabperf/caliper        # launch.contract.CALIPER_WORKSPACE
CONFIG_DIR=/etc/fabperf/caliper       # launch.contract.CALIPER_DIR
F="${FABPERF_FILES}/caliper-worker"

require_root

# 1. Node.js from Debian (bookworm-security has 18.20.x); refuse a Node the pinned Caliper rejects.
#    npm only when the workspace is not already installed and bound (prebuilt).
need_npm=""
if [ "$(npm_version_of "${WORKSPACE}" @hyperledger/caliper-cli)" != "${CALIPER_VERSION}" ] \
    || [ "$(cat "${WORKSPACE}/.fabperf-bound" 2>/dev/null || true)" != "${CALIPER_VERSION} ${CALIPER_BIND_SUT}" ]; then
  need_npm=npm
fi
install_nodejs "${NODE_MAJOR}" ${need_npm}
node_version="${NODE_VERSION}"
if [ "$(printf '%s\n%s\n' "${NODE_MIN_VERSION}" "${node_version}" | sort -V | head -n1)" != "${NODE_MIN_VERSION}" ]; then
  die "Node.js ${node_version} is older than ${NODE_MIN_VERSION} (NODE_MIN_VERSION) that Caliper ${CALIPER_VERSION} needs; is ${DEBIAN_SUITE:-bookworm}-security in the apt sources?"
fi
log "Node.js ${node_version}${need_npm:+, npm $(npm --version)}"

# 2. The caliper user and the workspace (root-owned, read-only for the workers).
ensure_system_user caliper /var/lib/caliper
install -d -m 0755 "${WORKSPACE}" "${WORKSPACE}/workloads" "${WORKSPACE}/benchmarks"
install -d -m 0750 -o root -g caliper "${CONFIG_DIR}"

# 3. Caliper CLI at the pinned version (skipped when already there: idempotent).
cd "${WORKSPACE}"
if [ "$(npm_version_of . @hyperledger/caliper-cli)" != "${CALIPER_VERSION}" ]; then
  [ -f package.json ] || jq -n '{name: "fabperf-caliper-workspace", private: true, description: "fabperf Caliper workspace"}' >package.json
  npm install --no-audit --no-fund --omit=dev --registry "${NPM_REGISTRY}" \
    "@hyperledger/caliper-cli@${CALIPER_VERSION}" \
    || die "npm install @hyperledger/caliper-cli@${CALIPER_VERSION} from ${NPM_REGISTRY} failed (behind a TLS proxy? put its CA in FABPERF_CA_DIR)"
fi
# 4. Bind to the SUT SDK at bake time: workers start without touching the network.
bound_file="${WORKSPACE}/.fabperf-bound"
if [ "$(cat "${bound_file}" 2>/dev/null || true)" != "${CALIPER_VERSION} ${CALIPER_BIND_SUT}" ]; then
  npm_config_registry="${NPM_REGISTRY}" ./node_modules/.bin/caliper bind \
    --caliper-bind-sut "${CALIPER_BIND_SUT}" --caliper-bind-cwd "${WORKSPACE}" \
    || die "caliper bind --caliper-bind-sut ${CALIPER_BIND_SUT} failed (CALIPER_BIND_SUT, CALIPER_VERSION=${CALIPER_VERSION})"
  echo "${CALIPER_VERSION} ${CALIPER_BIND_SUT}" >"${bound_file}"
fi
caliper_reported="$(./node_modules/.bin/caliper --version 2>/dev/null | tail -n1 || true)"
sdk_version="$(jq -r '.version // empty' node_modules/@hyperledger/fabric-gateway/package.json 2>/dev/null || true)"
log "caliper ${caliper_reported}, bound to ${CALIPER_BIND_SUT} (fabric-gateway ${sdk_version:-not installed})"

# 5. Workload modules and the remote workers' placeholder bench config.
install -d -m 0755 "${WORKSPACE}/workloads/lib"
for f in "${F}"/workloads/*.js; do install -m 0644 "${f}" "${WORKSPACE}/workloads/"; done
for f in "${F}"/workloads/lib/*.js; do install -m 0644 "${f}" "${WORKSPACE}/workloads/lib/"; done
install -m 0644 "${F}/benchmarks/worker.yaml" "${WORKSPACE}/benchmarks/worker.yaml"
for f in "${WORKSPACE}"/workloads/*.js; do
  node -e 'const m = require(process.argv[1]); if (typeof m.createWorkloadModule !== "function") process.exit(1)' "${f}" \
    || die "workload module ${f} does not load or lacks createWorkloadModule"
done
chown -R root:root "${WORKSPACE}"
chmod -R u=rwX,go=rX "${WORKSPACE}"

# 6. The worker unit template (instances are enabled by cloud-init).
install -m 0644 "${F}/caliper-worker@.service" /etc/systemd/system/caliper-worker@.service
systemd_reload

write_image_json caliper_version="${CALIPER_VERSION}" caliper_bind_sut="${CALIPER_BIND_SUT}" \
  fabric_gateway_sdk="${sdk_version}" node_version="${node_version}"
log "caliper-worker done"
