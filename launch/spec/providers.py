"""Where an environment runs: the providers launch knows, and each one's facts that the spec,
the render and the lab read (whether it starts the hosts, which baked images it boots, how
much user-data an instance takes). Each provider's driver and its settings table are
launch.machines.providers.<name>; a new provider is that module, a member here and its row
of FACTS.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from enum import StrEnum


class Provider(StrEnum):
    """Where an environment runs. `none` only renders, for hosts you already have.

    Not bake.profiles.Provider (where an image is baked): launch has `none`, which bakes
    nothing; `facts.bakes_with` names the bake provider whose images a provider boots.
    """

    QEMU = "qemu"
    AWS = "aws"
    OPENSTACK = "openstack"
    NSPAWN = "nspawn"
    NONE = "none"

    @property
    def facts(self) -> ProviderFacts:
        return FACTS[self]

    def bakes_with(self) -> str | None:
        """The bake provider whose images this provider boots (None: it boots none)."""
        return self.facts.bakes_with


@dataclass(frozen=True)
class UserDataBudget:
    """How much user-data an instance of the provider takes."""

    limit: int | None = None        # bytes; None: no limit
    base64: bool = False            # the limit counts the base64 form (Nova's API)
    overflow: bool = False          # over the limit still launches (EC2: through S3)
    where: str = ""                 # who sets the limit, for the error message

    def fits(self, data: bytes) -> bool:
        if self.limit is None:
            return True
        return self.size(data) <= self.limit

    def size(self, data: bytes) -> int:
        """The size the limit counts."""
        return len(base64.b64encode(data)) if self.base64 else len(data)

    def describe(self) -> str:
        return f"{self.limit} bytes {'after base64' if self.base64 else 'raw'} ({self.where})"


@dataclass(frozen=True)
class ProviderFacts:
    """What the spec, the render and the lab need to know of a provider."""

    starts_hosts: bool              # False: the hosts exist (explicit addresses, nothing booted)
    bakes_with: str | None          # the bake provider whose images it boots (bake.profiles)
    user_data: UserDataBudget


AWS_RAW_LIMIT = 16384        # EC2: user data before base64
OPENSTACK_B64_LIMIT = 65535  # Nova: user data after base64

# Where an environment without a state file or spec is looked for (`launch down NAME` after
# the state was lost): the provider that runs on this machine without an account.
LOCAL_DEFAULT = Provider.QEMU

FACTS: dict[Provider, ProviderFacts] = {
    Provider.QEMU: ProviderFacts(starts_hosts=True, bakes_with="qemu",
                                 user_data=UserDataBudget()),
    Provider.AWS: ProviderFacts(starts_hosts=True, bakes_with="aws",
                                user_data=UserDataBudget(AWS_RAW_LIMIT, overflow=True,
                                                         where="EC2")),
    Provider.OPENSTACK: ProviderFacts(starts_hosts=True, bakes_with="openstack",
                                      user_data=UserDataBudget(OPENSTACK_B64_LIMIT,
                                                               base64=True, where="Nova")),
    # the qemu images' root filesystems as containers (launch.machines.providers.nspawn)
    Provider.NSPAWN: ProviderFacts(starts_hosts=True, bakes_with="qemu",
                                   user_data=UserDataBudget()),
    Provider.NONE: ProviderFacts(starts_hosts=False, bakes_with=None,
                                 user_data=UserDataBudget()),
}
