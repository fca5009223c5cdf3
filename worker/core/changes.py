"""Change detection for the poller (pure): fingerprints of what matters per client, and which
clients differ between two complete passes."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping

from worker.core.desired import Row, client_id
from worker.core.rules import MappingRules


def fingerprint(row: Row, rules: MappingRules) -> str:
    """A short digest of the fields a sync depends on: ip, the subscriber-id field, estado and
    plan, and the client's override in force, if any (so that the poller syncs a client whose
    override began or ended). Other fields (balance, phone, ...) change nothing on the BQN and
    are left out."""
    plan = row.get("plan_internet")
    plan_fields = [plan.get("id"), plan.get("nombre")] if isinstance(plan, Mapping) else [plan]
    material = [row.get("ip"), row.get(rules.subscriber_id_field), row.get("estado"), *plan_fields]
    override = rules.overrides.get(client_id(row)) if rules.overrides else None
    if override is not None:
        material += [override.kind, override.value]
    encoded = json.dumps(material, ensure_ascii=False, default=str).encode()
    return hashlib.blake2b(encoded, digest_size=10).hexdigest()


def fingerprints(rows: Iterable[Row], rules: MappingRules) -> dict[int, str]:
    """Fingerprints by `id_servicio` (rows without one are left out)."""
    result = {}
    for row in rows:
        key = client_id(row)
        if key is not None:
            result[key] = fingerprint(row, rules)
    return result


def rows_by_id(rows: Iterable[Row]) -> dict[int, Row]:
    """A pass's rows by `id_servicio` (rows without one are left out)."""
    return {key: row for row in rows if (key := client_id(row)) is not None}


def changed_clients(before: Mapping[int, str], after: Mapping[int, str]) -> list[int]:
    """Clients that appeared, vanished or changed between two passes, in id order."""
    return sorted(key for key in before.keys() | after.keys() if before.get(key) != after.get(key))
