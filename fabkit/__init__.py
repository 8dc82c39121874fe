"""fabperf's kit: what bake and launch both stand on (errors, input rules, the one
subprocess door, atomic writes, the CLI kit, the repository layout, hashing)."""
