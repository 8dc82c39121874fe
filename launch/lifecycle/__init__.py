"""Stage 4 of launch: an environment brought up, checked and torn down (up, bootstrap,
validate, preflight, gc)."""
