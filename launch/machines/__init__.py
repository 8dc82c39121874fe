"""Stage 3 of launch: the machines a bundle runs on (providers, SSH, readiness, state)."""
