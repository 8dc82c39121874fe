#!/usr/bin/env bash
# fabric-node/chaincode.sh — the benchmark chaincode (packer/files/fabric-node/chaincode: a Node.js
# fixed-asset contract on fabric-contract-api/fabric-shim) installed at /opt/fabperf/chaincode
# with its npm dependencies, run as a chaincode-as-a-service server by fabric-chaincode@NAME.service
# through /usr/local/bin/fabperf-chaincode-server.
#
# Environment (image.yaml `versions`):
#   NODE_MAJOR                   Node.js major version from Debian                 (default 18)
#   FABRIC_CONTRACT_API_VERSION  npm fabric-contract-api version                   (default 2.5.8)
#   FABRIC_SHIM_VERSION          npm fabric-shim version                           (default 2.5.8)
#   FABRIC_GATEWAY_VERSION       npm @hyperledger/fabric-gateway of the bootstrap job's smoke
#                                transaction client (/opt/fabperf/gateway-client)  (default 1.5.0)
#   NPM_REGISTRY                 npm registry URL                                  (default https://registry.npmjs.org/)
# Both npm installs are skipped when node_modules already holds the pinned versions: bake's
# native build root (FABPERF_PHASE=prebuild) installs them once, the build VM unpacks them.
# npm checks every tarball against the registry's sha512 integrity and records it in
# /opt/fabperf/chaincode/package-lock.json (kept in the image).
set -euo pipefail
# shellcheck source=SCRIPTDIR/../../files/common/lib.sh
. "${FABPERF_FILES:-/tmp/fabperf/files}/common/lib.sh"

NODE_MAJOR="${NODE_MAJOR:-18}"
FABRIC_CONTRACT_API_VERSION="${FABRIC_CONTRACT_API_VERSION:-2.5.8}"
FABRIC_SHIM_VERSION="${FABRIC_SHIM_VERSION:-2.5.8}"
FABRIC_GATEWAY_VERSION="${FABRIC_GATEWAY_VERSION:-1.5.0}"
NPM_REGISTRY="${NPM_REGISTRY:-https://registry.npmjs.org/}"
CHAINCODE_DIR=/opt/fabperf/chaincode       # launch.contract.CHAINCODE_DIR
GATEWAY_DIR=/opt/fabperf/gateway-client    # launch.contract.GATEWAY_CLIENT
F="${FABPERF_FILES}/fabric-node"

require_root
# npm only when node_modules are not already there at the pinned versions (prebuilt).
need_npm=""
if [ "$(npm_version_of "${CHAINCODE_DIR}" fabric-contract-api)" != "${FABRIC_CONTRACT_API_VERSION}" ] \
    || [ "$(npm_version_of "${CHAINCODE_DIR}" fabric-shim)" != "${FABRIC_SHIM_VERSION}" ] \
    || [ "$(npm_version_of "${GATEWAY_DIR}" @hyperledger/fabric-gateway)" != "${FABRIC_GATEWAY_VERSION}" ]; then
  need_npm=npm
fi
install_nodejs "${NODE_MAJOR}" ${need_npm}
node_version="${NODE_VERSION}"

install -d -m 0755 "${CHAINCODE_DIR}" "${CHAINCODE_DIR}/lib"
install -m 0644 "${F}/chaincode/package.json" "${F}/chaincode/index.js" "${CHAINCODE_DIR}/"
install -m 0644 "${F}/chaincode/lib/"*.js "${CHAINCODE_DIR}/lib/"
cd "${CHAINCODE_DIR}"
if [ "$(npm_version_of . fabric-contract-api)" != "${FABRIC_CONTRACT_API_VERSION}" ] \
    || [ "$(npm_version_of . fabric-shim)" != "${FABRIC_SHIM_VERSION}" ]; then
  npm install --no-audit --no-fund --omit=dev --save-exact --registry "${NPM_REGISTRY}" \
    "fabric-contract-api@${FABRIC_CONTRACT_API_VERSION}" "fabric-shim@${FABRIC_SHIM_VERSION}" \
    || die "npm install fabric-contract-api@${FABRIC_CONTRACT_API_VERSION} fabric-shim@${FABRIC_SHIM_VERSION} from ${NPM_REGISTRY} failed (behind a TLS proxy? put its CA in FABPERF_CA_DIR)"
fi
# The contract must load and expose its transaction functions.
node -e '
const m = require(process.argv[1]);
const C = m.contracts && m.contracts[0];
const fns = Object.getOwnPropertyNames(C.prototype);
for (const f of ["createAsset", "getAsset", "updateAsset"]) {
  if (!fns.includes(f)) { console.error("missing " + f); process.exit(1); }
}' "${CHAINCODE_DIR}" || die "the chaincode in ${CHAINCODE_DIR} does not load"
[ -x node_modules/.bin/fabric-chaincode-node ] || die "fabric-shim did not install fabric-chaincode-node"
chown -R root:root "${CHAINCODE_DIR}"
chmod -R u=rwX,go=rX "${CHAINCODE_DIR}"

# The gateway client the bootstrap job submits its smoke transaction with (through a peer's
# Fabric Gateway, under the channel's real endorsement policy).
install -d -m 0755 "${GATEWAY_DIR}"
install -m 0644 "${F}/gateway-client/package.json" "${F}/gateway-client/smoke.js" "${GATEWAY_DIR}/"
cd "${GATEWAY_DIR}"
if [ "$(npm_version_of . @hyperledger/fabric-gateway)" != "${FABRIC_GATEWAY_VERSION}" ]; then
  npm install --no-audit --no-fund --omit=dev --save-exact --registry "${NPM_REGISTRY}" \
    "@hyperledger/fabric-gateway@${FABRIC_GATEWAY_VERSION}" \
    || die "npm install @hyperledger/fabric-gateway@${FABRIC_GATEWAY_VERSION} from ${NPM_REGISTRY} failed"
fi
node -e 'require(process.argv[1] + "/node_modules/@hyperledger/fabric-gateway")' "${GATEWAY_DIR}" \
  || die "the gateway client in ${GATEWAY_DIR} does not load"
chown -R root:root "${GATEWAY_DIR}"
chmod -R u=rwX,go=rX "${GATEWAY_DIR}"

install_file "${F}/fabperf-chaincode-server" /usr/local/bin/fabperf-chaincode-server 0755
install_file "${F}/fabric-chaincode@.service" /etc/systemd/system/fabric-chaincode@.service 0644
systemd_reload
write_image_json chaincode="fabperf-fixed-asset" fabric_contract_api="${FABRIC_CONTRACT_API_VERSION}" \
  fabric_shim="${FABRIC_SHIM_VERSION}" fabric_gateway="${FABRIC_GATEWAY_VERSION}" \
  node_version="${node_version}"
log "chaincode installed at ${CHAINCODE_DIR}"
