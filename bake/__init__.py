"""fabperf bake: golden VM images for a Hyperledger Fabric performance lab."""
