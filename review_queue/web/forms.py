"""Validation of what pages and API calls send: every bad value becomes :class:`BadInput` (HTTP 400) with the
field and the reason, before anything is changed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from fraudstream.review_queue.cases import QueueFilter
from fraudstream.stream.state.keys import SORTS

MAX_NOTE_LENGTH = 2000
STAGES = ("RULES", "LIGHT", "HEAVY")


class BadInput(ValueError):
    """Input that is refused (HTTP 400); the message names the field."""


def _explain(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err.get("loc", ())) or "body"
        parts.append(f"{where}: {err.get('msg', 'invalid')}")
    return "; ".join(parts)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    @classmethod
    def parse(cls, data: Mapping[str, Any]) -> Any:
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise BadInput(_explain(exc)) from None


class VerdictInput(_Strict):
    verdict: Literal["fraud", "legit"]
    note: str = Field("", max_length=MAX_NOTE_LENGTH)
    transaction_id: int | None = Field(None, ge=0)


class ReassignInput(_Strict):
    analyst: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")


class NoteInput(_Strict):
    note: str = Field("", max_length=MAX_NOTE_LENGTH)


class LoginInput(_Strict):
    user: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class UserAddInput(_Strict):
    name: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._-]+$")
    role: Literal["analyst", "admin"] = "analyst"
    password: str = Field("", max_length=1024)


class RoleInput(_Strict):
    role: Literal["analyst", "admin"]


class QueueInput(_Strict):
    stage: Literal["", "RULES", "LIGHT", "HEAVY"] = ""
    model: str = Field("", max_length=200)
    min_risk: float = Field(0.0, ge=0.0, le=1.0)
    sort: Literal["priority", "age", "amount", "risk"] = "priority"
    offset: int = Field(0, ge=0, le=1_000_000)

    def to_filter(self) -> QueueFilter:
        assert self.sort in SORTS
        return QueueFilter(stage=self.stage, model_version=self.model, min_risk=self.min_risk, sort=self.sort)


def form_fields(form: Mapping[str, Any], drop: tuple[str, ...] = ("csrf_token",)) -> dict[str, Any]:
    """Form values without the CSRF field and empty optional numbers."""
    out = {k: v for k, v in form.items() if k not in drop}
    if out.get("transaction_id") == "":
        out.pop("transaction_id")
    return out
