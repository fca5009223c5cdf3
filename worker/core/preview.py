"""A client's plan beside what the BQN holds: for each entry a sync of the client would touch,
what is there now and what would be there after, so that a person sees the change, not only
the new values."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from worker.core.model import Action, Group, Kind, Operation, Policy, Subscriber


def side_by_side(
    subscribers: Mapping[str, Subscriber | None],
    groups: Mapping[str, Group | None],
    policies: Mapping[str, Policy | None],
    planned: Iterable[Operation],
) -> list[dict[str, Any]]:
    """One row per BQN entry at the client's keys (`subscribers` by IP, `groups` by name, as
    read before the sync; `None`: nothing there) and per entry an operation of `planned`
    writes: its `kind` and `key`, the fields the sync manages as they are `now` and `after`
    the sync (`None`: no entry), and the `change` (`None`: left as it is). Keys with nothing
    there and nothing to do are left out, and so are the policies no operation writes. A
    policy's `now` shows only the fields its operation writes (the BQN adds many more)."""
    operations = {(op.kind, op.key): op for op in planned}
    held: dict[tuple[Kind, str], Subscriber | Group | Policy | None] = {
        **{(Kind.SUBSCRIBER, ip): entry for ip, entry in subscribers.items()},
        **{(Kind.GROUP, name): entry for name, entry in groups.items()},
        **{(Kind.POLICY, name): entry for name, entry in policies.items()},
    }
    rows = []
    for kind, key in sorted({*held, *operations}):
        have, op = held.get((kind, key)), operations.get((kind, key))
        if op is None and (have is None or kind is Kind.POLICY):
            continue
        now = _fields(have, op)
        after = now if op is None else None if op.action is Action.DELETE else dict(op.fields)
        rows.append(
            {
                "kind": str(kind),
                "key": key,
                "now": now,
                "after": after,
                "change": None if op is None else str(op.action),
            }
        )
    return rows


def _fields(
    have: Subscriber | Group | Policy | None, op: Operation | None
) -> dict[str, Any] | None:
    """What the sync manages of an entry held (as sent on the wire); of a policy, the fields
    its operation writes."""
    if have is None:
        return None
    if isinstance(have, Policy):
        written = op.fields if op is not None else {}
        return {name: have.fields.get(name) for name in written}
    return have.managed_fields()


def by_field(row: Mapping[str, Any]) -> list[dict[str, Any]]:
    """A row of `side_by_side` field by field, for a person to see which value differs: each
    field the entry has now or would have after, with both values (`None`: the entry or the
    field is not there) and whether they differ. An entry no operation writes differs in
    nothing, even when the BQN lists its members in another order."""
    now, after, written = row["now"], row["after"], row["change"] is not None
    names = dict.fromkeys([*(now or {}), *(after or {})])
    return [
        {
            "field": name,
            "now": None if now is None else now.get(name),
            "after": None if after is None else after.get(name),
            "differs": written
            and (now is None or after is None or now.get(name) != after.get(name)),
        }
        for name in names
    ]
