"""Clinics and their API tokens: created by an administrator (``emgdx clinic ...``).

A token is 256 random bits, shown once when it is created; the database keeps only its SHA-256.
A salted slow hash (bcrypt, argon2) protects low-entropy *passwords* against guessing; a
256-bit random token cannot be guessed, so one SHA-256 is enough and keeps every request's
authentication a single indexed lookup.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from emgdx.clinic.db import Database
from emgdx.clinic.models import ApiToken, Clinic
from emgdx.errors import ConfigError

__all__ = [
    "TOKEN_PREFIX",
    "authenticate",
    "clinic_id_by_name",
    "create_clinic",
    "create_token",
    "hash_token",
    "list_clinics",
    "live_token",
    "revoke_token",
]

TOKEN_PREFIX = "emgdx_"


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def _clinic_by_name(session: Session, name: str) -> Clinic:
    clinic = session.scalar(select(Clinic).where(Clinic.name == name))
    if clinic is None:
        raise ConfigError(f"no clinic named {name!r} (create it with `emgdx clinic create`)")
    return clinic


def clinic_id_by_name(session: Session, name: str) -> str:
    """The id of the clinic called ``name`` (ConfigError if there is none)."""
    return _clinic_by_name(session, name).id


def create_clinic(db: Database, name: str) -> str:
    """Create a clinic; returns its id. Raises ConfigError if the name is taken or empty."""
    name = name.strip()
    if not name or len(name) > 200:
        raise ConfigError("a clinic needs a name of 1-200 characters")
    try:
        with db.session() as session:
            clinic = Clinic(name=name)
            session.add(clinic)
            session.flush()
            return clinic.id
    except IntegrityError as exc:
        raise ConfigError(f"a clinic named {name!r} exists already") from exc


def list_clinics(db: Database) -> list[dict[str, object]]:
    with db.session() as session:
        rows = session.scalars(select(Clinic).order_by(Clinic.name)).all()
        return [
            {
                "id": c.id,
                "name": c.name,
                "tokens": [
                    {"prefix": t.prefix, "label": t.label, "revoked": t.revoked_at is not None}
                    for t in c.tokens
                ],
            }
            for c in rows
        ]


def create_token(db: Database, clinic_name: str, label: str = "") -> str:
    """A new token for the clinic. The plaintext is returned once and stored nowhere."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    with db.session() as session:
        clinic = _clinic_by_name(session, clinic_name)
        session.add(
            ApiToken(
                clinic_id=clinic.id,
                token_sha256=hash_token(token),
                prefix=token[: len(TOKEN_PREFIX) + 6],
                label=label[:200],
            )
        )
    return token


def revoke_token(db: Database, prefix: str) -> int:
    """Revoke every live token starting with ``prefix``; returns how many."""
    if len(prefix) < len(TOKEN_PREFIX) + 4:
        raise ConfigError("give at least the first 10 characters of the token")
    with db.session() as session:
        tokens = session.scalars(
            select(ApiToken).where(ApiToken.prefix == prefix[: len(TOKEN_PREFIX) + 6])
        ).all()
        live = [t for t in tokens if t.revoked_at is None]
        for t in live:
            t.revoked_at = dt.datetime.now(dt.UTC)
        return len(live)


def authenticate(session: Session, token: str) -> Clinic | None:
    """The clinic a live token belongs to, or None."""
    row = live_token(session, token)
    return None if row is None else row.clinic


def live_token(session: Session, token: str) -> ApiToken | None:
    """The stored row of a live (known, unrevoked) token, or None."""
    if not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    digest = hash_token(token)
    row = session.scalar(select(ApiToken).where(ApiToken.token_sha256 == digest))
    # The lookup is by hash (an index); compare_digest keeps the final check constant-time.
    if (
        row is None
        or row.revoked_at is not None
        or not hmac.compare_digest(row.token_sha256, digest)
    ):
        return None
    return row
