'use strict';
// fabperf benchmark chaincode. fabric-chaincode-node loads `contracts` from this module.
const FixedAssetContract = require('./lib/fixed-asset');

module.exports.FixedAssetContract = FixedAssetContract;
module.exports.contracts = [FixedAssetContract];
