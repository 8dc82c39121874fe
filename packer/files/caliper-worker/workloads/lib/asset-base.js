'use strict';
// Shared base of fabperf's workload modules for the fixed-asset benchmark chaincode
// (packer/files/fabric-node/chaincode). Round arguments:
//   contractId   chaincode name on the channel          (default "fixed-asset")
//   payloadSize  bytes of payload per asset              (default 100)
//   assets       assets each worker creates in initialize (read/update rounds, default 100)
//   idPrefix     prefix of asset ids                      (default "asset")
const { WorkloadModuleBase } = require('@hyperledger/caliper-core');

class AssetWorkloadBase extends WorkloadModuleBase {
    async initializeWorkloadModule(workerIndex, totalWorkers, roundIndex, roundArguments, sutAdapter, sutContext) {
        await super.initializeWorkloadModule(workerIndex, totalWorkers, roundIndex, roundArguments, sutAdapter, sutContext);
        const args = roundArguments || {};
        this.contractId = args.contractId || 'fixed-asset';
        this.payloadSize = Number.parseInt(args.payloadSize || 100, 10);
        this.assets = Number.parseInt(args.assets || 100, 10);
        this.idPrefix = args.idPrefix || 'asset';
        if (!Number.isInteger(this.payloadSize) || this.payloadSize < 0) {
            throw new Error(`payloadSize must be a non-negative integer, got ${args.payloadSize}`);
        }
        this.txIndex = 0;
    }

    /** An id unique per worker and round: several workers never collide. */
    assetId(n) {
        return `${this.idPrefix}_${this.roundIndex}_${this.workerIndex}_${n}`;
    }

    request(contractFunction, contractArguments, readOnly) {
        return {
            contractId: this.contractId,
            contractFunction,
            contractArguments: contractArguments.map(String),
            readOnly,
        };
    }

    /** Create this worker's working set (read and update rounds). */
    async createAssets() {
        for (let n = 0; n < this.assets; n++) {
            await this.sutAdapter.sendRequests(this.request('createAsset', [this.assetId(n), this.payloadSize], false));
        }
    }
}

module.exports = AssetWorkloadBase;
