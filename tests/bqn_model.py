"""An in-memory model of what the BQN does with the sync's operations (for property tests)."""

from collections.abc import Iterable, Mapping

from worker.core.model import Action, Kind, Operation, Subscriber


def apply_to_state(
    operations: Iterable[Operation], subscribers: Mapping[str, Subscriber]
) -> dict[str, Subscriber]:
    """The subscribers the BQN holds after `operations`: POST creates or replaces, PUT sets
    the fields sent, DELETE removes; a REST write of `policyRate` makes it REST-assigned."""
    state = dict(subscribers)
    for op in operations:
        if op.kind is not Kind.SUBSCRIBER:
            continue
        if op.action is Action.DELETE:
            state.pop(op.key, None)
        else:
            state[op.key] = Subscriber(
                ip=op.key,
                subscriber_id=op.fields["subscriberId"],
                policy_rate=op.fields["policyRate"],
                assigned_by="rest",
            )
    return state
