"""Stage 2 of launch: a spec rendered into a plan and a bundle (crypto, configs, cloud-init)."""
