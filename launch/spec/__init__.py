"""Stage 1 of launch: the environment spec (what to run), read and validated."""
