"""Building WispHub client rows for tests: only the fields the sync reads, plus a secret."""

from typing import Any


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
        "plan_internet": None if plan is None else {"id": 7, "nombre": plan},
        "ultimo_cambio": ultimo_cambio,
        "password_servicio": "s3cret",
        **extra,
    }
