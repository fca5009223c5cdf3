"""Building BQN entries and the sync's operations for tests."""

from worker.core.model import Action, Kind, Operation, Policy, Subscriber


def policy(name, policy_id=None, down=None, up=None, **extra):
    fields = dict(extra)
    if policy_id is not None:
        fields["policyId"] = policy_id
    if down is not None:
        fields["rateLimitDownlink"] = {"rate": down}
    if up is not None:
        fields["rateLimitUplink"] = {"rate": up}
    return Policy(name, fields)


def sub(ip, sid="a", policy="P", assigned_by="rest", id_servicio=None):
    return Subscriber(ip, sid, policy, id_servicio, assigned_by)


def create(ip, sid="a", policy="P", id_servicio=None):
    return Operation(
        Action.CREATE, Kind.SUBSCRIBER, ip, {"subscriberId": sid, "policyRate": policy}, id_servicio
    )


def update(ip, sid="a", policy="P", id_servicio=None):
    return Operation(
        Action.UPDATE, Kind.SUBSCRIBER, ip, {"subscriberId": sid, "policyRate": policy}, id_servicio
    )


def delete(ip):
    return Operation(Action.DELETE, Kind.SUBSCRIBER, ip)


def group_op(action, group, fields=True):
    body = group.managed_fields() if fields else {}
    return Operation(action, Kind.GROUP, group.name, body, group.id_servicio if fields else None)
