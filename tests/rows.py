"""Building WispHub client rows for tests: only the fields the sync reads, plus a secret."""

import zlib
from typing import Any

from sandbox.seed import wisphub_plans

# Plans are known by id: a row names a plan of the simulator's catalogue by its real id, and
# any other plan by an id of its own, above the catalogue's (as WispHub numbers new plans).
PLAN_IDS = {plan["nombre"]: plan["id"] for plan in wisphub_plans()}


def plan_id(nombre: str) -> int:
    """The id rows give the plan `nombre`."""
    return PLAN_IDS.get(nombre) or 900_000 + zlib.crc32(nombre.encode()) % 100_000


def row(
    id_servicio: int,
    ip: str = "10.0.0.1",
    estado: str = "Activo",
    plan: str | None = "Plan 10M",
    nombre: str = "cliente",
    ultimo_cambio: str = "01/01/2026 00:00:00",
    **extra: Any,
) -> dict[str, Any]:
    """A client row shaped like WispHub's list serializer."""
    return {
        "id_servicio": id_servicio,
        "nombre": nombre,
        "usuario": f"{nombre}@isp",
        "ip": ip,
        "ip_local": "10.255.255.1",
        "estado": estado,
        "plan_internet": None if plan is None else {"id": plan_id(plan), "nombre": plan},
        "ultimo_cambio": ultimo_cambio,
        "password_servicio": "s3cret",
        **extra,
    }
