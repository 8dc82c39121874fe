"""Providers that run an environment's hosts (qemu, aws, openstack, none)."""
