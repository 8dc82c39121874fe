"""What bake knows of each provider beyond its profile (bake.profiles) and its Packer
template: the artifact a build leaves, how it is found again, how the build user is made and
how far `packer validate` goes. One module per provider, each a Baker; BAKERS is the table
bake.build and launch read them from."""

from __future__ import annotations

from bake.profiles import Provider
from bake.providers import aws, openstack, qemu
from bake.providers.base import Baker

BAKERS: dict[Provider, Baker] = {
    Provider.QEMU: qemu.QemuBaker(),
    Provider.AWS: aws.AwsBaker(),
    Provider.OPENSTACK: openstack.OpenstackBaker(),
}


def baker(provider: Provider | str) -> Baker:
    """The Baker of a provider (a bake.profiles.Provider or its name)."""
    return BAKERS[Provider(provider)]
