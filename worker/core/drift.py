"""Drift: where the BQN itself differs from what a complete WispHub pass says (pure: no I/O).

The poller compares the pass with the BQN's own lists, not only with its previous pass, so a
lost delete, an entry changed or removed by hand, or a bug is found whatever caused it. What it
finds is sorted by who should correct it: the clients whose entries are missing or wrong (their
client jobs), the addresses the BQN holds for no client of the pass (an address job, which reads
again whoever last claimed the address before anything is deleted), and the policies, which
belong to no client and are corrected at once.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from worker.core.desired import GROUP_PREFIX, Desired
from worker.core.diff import plan_full
from worker.core.model import Action, Group, Kind, Operation, Policy, Subscriber


@dataclass(frozen=True)
class Drift:
    """What differs, by who corrects it."""

    clients: tuple[int, ...] = ()
    addresses: tuple[str, ...] = ()
    policies: tuple[Operation, ...] = ()
    # Clients of groups the BQN holds and no client of the pass has: their jobs remove them.
    gone: tuple[int, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.clients or self.addresses or self.policies or self.gone)

    @property
    def removals(self) -> int:
        """How many entries would go: the deletion guard counts these."""
        return len(self.addresses) + len(self.gone)


def find_drift(
    desired: Desired,
    subscribers: Iterable[Subscriber],
    groups: Iterable[Group],
    policies: Iterable[Policy],
    wanted_policies: Iterable[Policy],
) -> Drift:
    """The drift between `desired` (from a complete pass) and what the BQN holds."""
    changes = plan_full(desired, subscribers, policies, wanted_policies, groups)
    clients: set[int] = set()
    gone: set[int] = set()
    addresses: set[str] = set()
    policy_ops: list[Operation] = []
    for op in changes.operations:
        if op.kind is Kind.POLICY:
            policy_ops.append(op)
        elif op.kind is Kind.SUBSCRIBER and op.action is Action.DELETE:
            addresses.add(op.key)
        elif op.action is Action.DELETE:  # a group of the sync's no client of the pass has
            gone.add(int(op.key.removeprefix(GROUP_PREFIX)))
        elif op.id_servicio is not None:
            clients.add(op.id_servicio)
    return Drift(
        clients=tuple(sorted(clients)),
        gone=tuple(sorted(gone - clients)),
        addresses=tuple(sorted(addresses)),
        policies=tuple(policy_ops),
    )
