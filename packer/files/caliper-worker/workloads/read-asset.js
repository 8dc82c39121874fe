'use strict';
// Each transaction evaluates getAsset on this worker's working set (created in initialize).
const AssetWorkloadBase = require('./lib/asset-base');

class ReadAsset extends AssetWorkloadBase {
    async initializeWorkloadModule(...args) {
        await super.initializeWorkloadModule(...args);
        await this.createAssets();
    }

    async submitTransaction() {
        const id = this.assetId(this.txIndex++ % this.assets);
        await this.sutAdapter.sendRequests(this.request('getAsset', [id], true));
    }
}

module.exports.createWorkloadModule = () => new ReadAsset();
