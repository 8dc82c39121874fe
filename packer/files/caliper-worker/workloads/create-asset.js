'use strict';
// Each transaction creates a new asset with payloadSize bytes (see lib/asset-base.js).
const AssetWorkloadBase = require('./lib/asset-base');

class CreateAsset extends AssetWorkloadBase {
    async submitTransaction() {
        const id = this.assetId(`c${this.txIndex++}`);
        await this.sutAdapter.sendRequests(this.request('createAsset', [id, this.payloadSize], false));
    }
}

module.exports.createWorkloadModule = () => new CreateAsset();
