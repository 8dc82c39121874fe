'use strict';
// Each transaction rewrites one asset of this worker's working set with a new payload.
const AssetWorkloadBase = require('./lib/asset-base');

class UpdateAsset extends AssetWorkloadBase {
    async initializeWorkloadModule(...args) {
        await super.initializeWorkloadModule(...args);
        await this.createAssets();
    }

    async submitTransaction() {
        const id = this.assetId(this.txIndex++ % this.assets);
        await this.sutAdapter.sendRequests(this.request('updateAsset', [id, this.payloadSize], false));
    }
}

module.exports.createWorkloadModule = () => new UpdateAsset();
