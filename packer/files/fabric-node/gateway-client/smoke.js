'use strict';
// fabperf smoke transaction (run by fabperf-bootstrap on the bootstrap node): submit
// createAsset through a peer's Fabric Gateway, wait for its commit status, then read the
// asset back with an evaluate. The gateway collects the endorsements the chaincode's real
// endorsement policy needs (cross-organisation discovery), exactly as Caliper will.
//
// usage: node smoke.js JSON   where JSON = {"endpoint": "peer0.org1.example.com:7051",
//   "tls_ca": FILE, "msp_id": "Org1MSP", "cert": FILE, "key": FILE, "channel": "mychannel",
//   "chaincode": "fixed-asset", "asset": "fabperf-smoke-1", "payload_size": 100,
//   "timeout_s": 60}
// prints one JSON line: {"asset", "tx_id", "status": "VALID", "block", "read": {...}, "existed"}
// exits 1 with {"error", "details"} on failure.
const fs = require('fs');
const crypto = require('crypto');
const path = require('path');

const here = __dirname;
const grpc = require(path.join(here, 'node_modules/@grpc/grpc-js'));
const { connect, signers } = require(path.join(here, 'node_modules/@hyperledger/fabric-gateway'));

function fail(error, details) {
    process.stdout.write(JSON.stringify({ error: String(error), details: details || [] }) + '\n');
    process.exit(1);
}

async function main() {
    const o = JSON.parse(process.argv[2]);
    const timeoutMs = (o.timeout_s || 60) * 1000;
    const host = o.endpoint.split(':')[0];
    const client = new grpc.Client(o.endpoint, grpc.credentials.createSsl(fs.readFileSync(o.tls_ca)),
        { 'grpc.ssl_target_name_override': host });
    const deadline = (ms) => () => ({ deadline: Date.now() + ms });
    const gateway = connect({
        client,
        identity: { mspId: o.msp_id, credentials: fs.readFileSync(o.cert) },
        signer: signers.newPrivateKeySigner(crypto.createPrivateKey(fs.readFileSync(o.key))),
        evaluateOptions: deadline(10000),
        endorseOptions: deadline(30000),
        submitOptions: deadline(10000),
        commitStatusOptions: deadline(timeoutMs),
    });
    try {
        const contract = gateway.getNetwork(o.channel).getContract(o.chaincode);
        const decode = (bytes) => JSON.parse(Buffer.from(bytes).toString('utf8'));
        let existed = false;
        try {
            const before = decode(await contract.evaluateTransaction('getAsset', o.asset));
            existed = Boolean(before && before.id === o.asset);
        } catch (e) {
            existed = false;
        }
        let txId = null;
        let block = null;
        let status = 'VALID';
        if (!existed) {
            const commit = await contract.submitAsync('createAsset', {
                arguments: [o.asset, String(o.payload_size || 100)],
            });
            txId = commit.getTransactionId();
            const s = await commit.getStatus();
            block = Number(s.blockNumber);
            const names = { 0: 'VALID' };
            status = names[s.code] || `INVALID(code ${s.code})`;
            if (!s.successful) {
                fail(`transaction ${txId} committed in block ${block} as ${status}`);
            }
        }
        const read = decode(await contract.evaluateTransaction('getAsset', o.asset));
        if (read.id !== o.asset) {
            fail(`read back asset ${JSON.stringify(read.id)}, expected ${o.asset}`);
        }
        process.stdout.write(JSON.stringify({
            asset: o.asset, tx_id: txId, status, block, existed,
            read: { id: read.id, owner: read.owner, version: read.version, bytes: (read.payload || '').length },
        }) + '\n');
    } catch (e) {
        const details = (e.details || []).map((d) => `${d.address} (${d.mspId}): ${d.message}`);
        fail(e.message || e, details);
    } finally {
        gateway.close();
        client.close();
    }
}

main().catch((e) => fail(e.message || e));
