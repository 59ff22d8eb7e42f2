"""The base of every service's typed settings model: pydantic-settings, read from the environment on demand only.

A settings model (``StreamSettings``, ``TrainSettings``, ``EvaluationSettings``) is a frozen pydantic model that
forbids unknown fields and documents each field (``description``).  Constructing one reads nothing but its
arguments; :meth:`EnvSettings.from_env` (called by the CLI, the edge) reads ``<prefix><FIELD>`` variables of the
model's ``env_prefix`` (plus the aliases a field declares), then applies explicit overrides.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from contextvars import ContextVar
from typing import Any, ClassVar, TypeVar

from pydantic import AliasChoices, ValidationError
from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings, EnvSettingsSource, PydanticBaseSettingsSource, SettingsConfigDict
from pydantic_settings.sources.utils import parse_env_vars

S = TypeVar("S", bound="EnvSettings")

#: ``scheme://user:`` then a non-empty password up to the ``@`` that ends the credentials of a URL.
_URL_PASSWORD = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*://[^:/@]*:)[^/@]+@")
#: The environment ``from_env`` is reading (unset: construction reads no environment).
_ENVIRON: ContextVar[Mapping[str, str] | None] = ContextVar("fraudstream_settings_environ", default=None)


def redact_url(url: str) -> str:
    """``url`` fit for a log line or an error message: a password in it (``redis://user:secret@host``) becomes
    ``***``; anything that is not a URL with credentials comes back unchanged."""
    return _URL_PASSWORD.sub(r"\1***@", url)


class SettingsError(ValueError):
    """A variable could not be read as its field's type; the message names the variable."""


class _MappingEnvSource(EnvSettingsSource):
    """pydantic-settings' environment source over a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str)


class EnvSettings(BaseSettings):
    """Base of the settings models (see the module docstring)."""

    model_config = SettingsConfigDict(frozen=True, extra="forbid", populate_by_name=True, case_sensitive=False)
    #: Error type raised for a bad variable (a service may use its own).
    settings_error: ClassVar[type[ValueError]] = SettingsError

    def __init__(self, **values: Any) -> None:
        try:
            super().__init__(**values)
        except ValidationError as exc:
            raise self.settings_error(type(self)._explain(exc)) from None

    @classmethod
    def settings_customise_sources(cls, settings_cls: type[BaseSettings], init_settings: PydanticBaseSettingsSource,
                                   env_settings: PydanticBaseSettingsSource,
                                   dotenv_settings: PydanticBaseSettingsSource,
                                   file_secret_settings: PydanticBaseSettingsSource
                                   ) -> tuple[PydanticBaseSettingsSource, ...]:
        environ = _ENVIRON.get()
        if environ is None:
            return (init_settings,)
        return (init_settings, _MappingEnvSource(settings_cls, environ))

    @classmethod
    def from_env(cls: type[S], environ: Mapping[str, str] | None = None, /, **overrides: Any) -> S:
        """Settings from the environment (default ``os.environ``), then the overrides that are not None."""
        token = _ENVIRON.set(os.environ if environ is None else environ)
        try:
            return cls._validated({k: v for k, v in overrides.items() if v is not None})
        finally:
            _ENVIRON.reset(token)

    def with_overrides(self: S, **overrides: Any) -> S:
        """A copy with the overrides that are not None (validated; no environment read)."""
        values = {name: getattr(self, name) for name in type(self).model_fields}
        values.update({k: v for k, v in overrides.items() if v is not None})
        return type(self)._validated(values)

    @classmethod
    def _validated(cls: type[S], values: dict[str, Any]) -> S:
        return cls(**values)

    @classmethod
    def _explain(cls, exc: ValidationError) -> str:
        problems = []
        for error in exc.errors():
            loc = str(error["loc"][0]) if error["loc"] else ""
            name = loc if loc in cls.model_fields else next(
                (n for n, f in cls.model_fields.items() if loc in cls.env_names(n, f)), loc)
            where = cls.env_names(name, cls.model_fields[name])[0] if name in cls.model_fields else loc
            if name in cls.model_fields:
                problems.append(f"{where} ({name}): {error['msg']}, got {error.get('input')!r}")
            else:
                problems.append(f"{loc}: {error['msg']}")
        return "; ".join(problems)

    @classmethod
    def env_names(cls, name: str, info: FieldInfo) -> list[str]:
        """Environment variables read for a field, the main one first."""
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            return [str(choice) for choice in alias.choices]
        if isinstance(alias, str):
            return [alias]
        return [f"{cls.model_config.get('env_prefix', '')}{name}".upper()]

    @classmethod
    def describe(cls) -> list[tuple[str, str, str]]:
        """(environment variable, default, description) per field, for ``--help`` texts and the README."""
        rows = []
        for name, info in cls.model_fields.items():
            names = cls.env_names(name, info)
            label = names[0] + (f" (or {', '.join(names[1:])})" if len(names) > 1 else "")
            rows.append((label, repr(info.default), info.description or ""))
        return rows
