'use strict';
// A fixed-asset contract for throughput benchmarks: each asset carries a payload of a size the
// client chooses, so a round can measure Fabric with small or large write sets.
//
// The payload must be identical on every endorsing peer (endorsements are compared), so it is
// derived from the transaction id, never from a random source or the clock.
const { Contract } = require('fabric-contract-api');

const MAX_PAYLOAD_BYTES = 1024 * 1024;

function payloadOf(txId, size) {
    const n = Number.parseInt(size, 10);
    if (!Number.isInteger(n) || n < 0 || n > MAX_PAYLOAD_BYTES) {
        throw new Error(`payloadSize must be an integer in [0, ${MAX_PAYLOAD_BYTES}], got ${size}`);
    }
    if (n === 0) {
        return '';
    }
    return txId.repeat(Math.ceil(n / txId.length)).slice(0, n);
}

class FixedAssetContract extends Contract {
    constructor() {
        super('fixed-asset');
    }

    async createAsset(ctx, id, payloadSize) {
        const key = String(id);
        const existing = await ctx.stub.getState(key);
        if (existing && existing.length > 0) {
            throw new Error(`asset ${key} already exists`);
        }
        const asset = {
            id: key,
            owner: ctx.clientIdentity.getMSPID(),
            version: 1,
            payload: payloadOf(ctx.stub.getTxID(), payloadSize),
        };
        await ctx.stub.putState(key, Buffer.from(JSON.stringify(asset)));
        return JSON.stringify({ id: key, version: asset.version, bytes: asset.payload.length });
    }

    async getAsset(ctx, id) {
        const data = await ctx.stub.getState(String(id));
        if (!data || data.length === 0) {
            throw new Error(`asset ${id} does not exist`);
        }
        return data.toString('utf8');
    }

    async updateAsset(ctx, id, payloadSize) {
        const key = String(id);
        const data = await ctx.stub.getState(key);
        if (!data || data.length === 0) {
            throw new Error(`asset ${key} does not exist`);
        }
        const asset = JSON.parse(data.toString('utf8'));
        asset.version += 1;
        asset.payload = payloadOf(ctx.stub.getTxID(), payloadSize);
        await ctx.stub.putState(key, Buffer.from(JSON.stringify(asset)));
        return JSON.stringify({ id: key, version: asset.version, bytes: asset.payload.length });
    }

    async deleteAsset(ctx, id) {
        const key = String(id);
        const data = await ctx.stub.getState(key);
        if (!data || data.length === 0) {
            throw new Error(`asset ${key} does not exist`);
        }
        await ctx.stub.deleteState(key);
    }

    // Endorsement without state access: measures the ordering/commit path alone.
    async ping(ctx) {
        return ctx.stub.getTxID();
    }
}

module.exports = FixedAssetContract;
