"""The tenants file (YAML, validated by marshmallow): each tenant's channels, secrets, lifecycle
model and limits, the look-ups webhooks need, and the start-time checks of its secrets.

A broken tenants file gives one message naming the file, the line and the field of every problem,
so an operator can fix it without reading a traceback. Secrets named by ``*_env`` are read from
the environment only when used (``Secret.reveal``): they are the tenants', not ``SIYU_*``
settings (those are ``Settings``, shared/config.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

import yaml
from marshmallow import (
    EXCLUDE,
    RAISE,
    Schema,
    ValidationError,
    fields,
    post_load,
    validate,
    validates_schema,
)

from shared.errors import ConfigError
from shared.limits import Limits, LimitsSchema
from shared.vocabulary import DEFAULT_MODEL, MODES, time_zone_error

DEMO_TENANTS_PATH = Path(__file__).with_name("demo_tenants.yaml")
# Demo secrets for the demo tenants' `*_env` entries; the fake WeChat API accepts these.
DEMO_SECRETS = {
    "ACME_OA_SECRET": "acme-oa-demo-secret",
    "ACME_WECOM_SECRET": "acme-wecom-demo-secret",
    "BLOOM_OA_SECRET": "bloom-oa-demo-secret",
    "BLOOM_WECOM_SECRET": "bloom-wecom-demo-secret",
}

TENANT_ID_PATTERN = r"^[a-z0-9-]{2,40}$"
AES_KEY_PATTERN = r"^[A-Za-z0-9]{43}$"


class Secret:
    """A secret given inline or by the name of an environment variable, read only when used.

    Its repr never shows the value, so a secret that reaches a log line or a traceback stays hidden.
    """

    __slots__ = ("_env", "_path", "_value")

    def __init__(self, *, value: str | None = None, env: str | None = None, path: str = ""):
        self._value = value
        self._env = env
        self._path = path

    def reveal(self) -> str:
        if self._value is not None:
            return self._value
        value = os.environ.get(self._env or "")
        if not value:
            raise ConfigError(
                f"{self._path}_env: environment variable {self._env} is not set",
                code="missing_secret",
            )
        return value

    @property
    def source(self) -> str:
        return f"env:{self._env}" if self._env else "inline"

    @property
    def env(self) -> str | None:
        """The environment variable holding the value (None for an inline secret)."""
        return self._env

    @property
    def path(self) -> str:
        return self._path

    def is_set(self, environ: Mapping[str, str]) -> bool:
        return self._value is not None or bool(environ.get(self._env or ""))

    def length(self, environ: Mapping[str, str]) -> int:
        """How long the value is (0 if unset): enough to judge its strength, never to show it."""
        return len(self._value if self._value is not None else environ.get(self._env or "", ""))

    def __repr__(self) -> str:
        return f"Secret({self.source}, ***)"

    __str__ = __repr__


# --- YAML with line numbers -------------------------------------------------------------------


def _compose_with_lines(text: str) -> tuple[Any, dict[tuple, int]]:
    """Parse YAML safely and remember the line of every key and list item (1-based)."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    lines: dict[tuple, int] = {}
    if node is None:
        return None, lines
    # A SafeLoader used only for its constructor: scalars get YAML's usual types (int, bool...).
    scalars = yaml.SafeLoader("")
    return _construct(node, (), lines, scalars), lines


def _construct(node: yaml.Node, path: tuple, lines: dict[tuple, int], scalars: Any) -> Any:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        result: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = scalars.construct_object(key_node)
            if key in result:
                raise _YamlDuplicateKey(key, key_node.start_mark.line + 1)
            lines[(*path, key)] = key_node.start_mark.line + 1
            result[key] = _construct(value_node, (*path, key), lines, scalars)
        return result
    if isinstance(node, yaml.SequenceNode):
        return [_construct(item, (*path, i), lines, scalars) for i, item in enumerate(node.value)]
    return scalars.construct_object(node)


class _YamlDuplicateKey(Exception):
    def __init__(self, key: Any, line: int):
        self.key, self.line = key, line


def _flatten_errors(messages: Any, path: tuple = ()) -> list[tuple[tuple, str]]:
    if isinstance(messages, Mapping):
        out: list[tuple[tuple, str]] = []
        for key, value in messages.items():
            sub = path if key == "_schema" else (*path, key)
            out.extend(_flatten_errors(value, sub))
        return out
    if isinstance(messages, list):
        return [(path, str(m)) for m in messages]
    return [(path, str(messages))]


def _dotted(path: tuple) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _line_for(path: tuple, lines: dict[tuple, int]) -> int | None:
    for end in range(len(path), -1, -1):
        if path[:end] in lines:
            return lines[path[:end]]
    return None


# --- tenants schema ---------------------------------------------------------------------------


class _SecretFieldsMixin:
    """Each secret ``x`` may be given as ``x: value`` or ``x_env: VAR`` (exactly one)."""

    secret_fields: tuple[tuple[str, bool], ...] = ()

    @validates_schema
    def _one_source_per_secret(self, data: dict, **kwargs: Any) -> None:
        errors: dict[str, list[str]] = {}
        for name, required in self.secret_fields:
            inline, env = data.get(name), data.get(f"{name}_env")
            if inline is not None and env is not None:
                errors[name] = [f"give either {name} or {name}_env, not both"]
            elif required and inline is None and env is None:
                errors[name] = [f"missing: give {name} or {name}_env"]
        if errors:
            raise ValidationError(errors)

    def _secrets(self, data: dict, where: str) -> dict[str, Secret | None]:
        out: dict[str, Secret | None] = {}
        for name, _required in self.secret_fields:
            inline, env = data.pop(name, None), data.pop(f"{name}_env", None)
            out[name] = (
                Secret(value=inline, env=env, path=f"{where}.{name}")
                if inline is not None or env is not None
                else None
            )
        return out


def _env_name() -> fields.String:
    return fields.String(
        validate=validate.Regexp(r"^[A-Z_][A-Z0-9_]*$", error="not an environment variable name")
    )


def _aes_key() -> fields.String:
    return fields.String(
        validate=validate.Regexp(AES_KEY_PATTERN, error="must be 43 characters of A-Z, a-z, 0-9")
    )


class OfficialAccountSchema(_SecretFieldsMixin, Schema):
    class Meta:
        unknown = RAISE

    secret_fields = (("token", True), ("encoding_aes_key", False), ("app_secret", False))

    app_id = fields.String(required=True, validate=validate.Regexp(r"^wx[0-9a-zA-Z]{10,30}$"))
    name = fields.String(load_default=None)
    token = fields.String(validate=validate.Length(min=3, max=32))
    token_env = _env_name()
    encoding_aes_key = _aes_key()
    encoding_aes_key_env = _env_name()
    app_secret = fields.String()
    app_secret_env = _env_name()
    # With an EncodingAESKey, plaintext callbacks (whose body is unsigned) are refused unless
    # this is true: docs/security.md "Webhooks". Without a key, plaintext is the only mode.
    plaintext_allowed = fields.Boolean(load_default=False)

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> OfficialAccount:
        secrets = self._secrets(data, f"wechat_oa[{data['app_id']}]")
        return OfficialAccount(
            app_id=data["app_id"],
            name=data.get("name"),
            plaintext_allowed=data["plaintext_allowed"],
            **secrets,
        )


class WeComSchema(_SecretFieldsMixin, Schema):
    class Meta:
        unknown = RAISE

    secret_fields = (("token", True), ("encoding_aes_key", True), ("secret", False))

    corp_id = fields.String(required=True, validate=validate.Regexp(r"^w[wx][0-9a-zA-Z]{8,30}$"))
    agent_id = fields.Integer(load_default=None)
    token = fields.String(validate=validate.Length(min=3, max=32))
    token_env = _env_name()
    encoding_aes_key = _aes_key()
    encoding_aes_key_env = _env_name()
    secret = fields.String()
    secret_env = _env_name()

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> WeComCorp:
        secrets = self._secrets(data, "wecom")
        return WeComCorp(corp_id=data["corp_id"], agent_id=data.get("agent_id"), **secrets)


def _valid_timezone(value: str) -> None:
    if (error := time_zone_error(value)) is not None:  # by name: ZoneInfo("Asia") is a directory
        raise ValidationError(error)


class LinkKeysSchema(Schema):
    """The tenant's tracked-link key (shared/links.py): its version, raised to rotate; links
    signed under the version before it keep working until ``previous_valid_until``
    (docs/security.md "Tracked links")."""

    class Meta:
        unknown = RAISE

    key_version = fields.Integer(load_default=1, validate=validate.Range(min=1, max=1_000_000))
    previous_valid_until = fields.AwareDateTime(load_default=None)

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> LinkKeys:
        return LinkKeys(data["key_version"], data["previous_valid_until"])


class TenantSchema(Schema):
    class Meta:
        unknown = RAISE

    id = fields.String(
        required=True,
        validate=validate.Regexp(
            TENANT_ID_PATTERN, error="must be 2-40 characters of a-z, 0-9 and -"
        ),
    )
    name = fields.String(required=True, validate=validate.Length(min=1, max=200))
    mode = fields.String(required=True, validate=validate.OneOf(MODES))
    lifecycle_model = fields.String(
        load_default=None, validate=validate.Regexp(r"^[a-z0-9_-]{2,40}$")
    )
    timezone = fields.String(load_default="Asia/Shanghai", validate=_valid_timezone)
    wechat_oa = fields.List(fields.Nested(OfficialAccountSchema), load_default=list)
    wecom = fields.Nested(WeComSchema, load_default=None, allow_none=True)
    # false: Siyu never calls the WeChat/WeCom APIs for this tenant (no sends, no enrichment), so
    # its secret / app_secret are neither required nor read; callbacks are still received.
    api_access = fields.Boolean(load_default=True)
    links = fields.Nested(LinkKeysSchema, load_default=None)
    # Request rates over the deployment defaults (shared/limits.py, docs/security.md "Rate limits").
    limits = fields.Nested(LimitsSchema, load_default=Limits())

    @post_load
    def _build(self, data: dict, **kwargs: Any) -> Tenant:
        model = data["lifecycle_model"] or DEFAULT_MODEL[data["mode"]]
        oas, wecom = tuple(data["wechat_oa"]), data["wecom"]
        if not data["api_access"]:  # every API client skips a channel without its secret
            oas = tuple(replace(oa, app_secret=None) for oa in oas)
            wecom = replace(wecom, secret=None) if wecom is not None else None
        return Tenant(
            id=data["id"],
            name=data["name"],
            mode=data["mode"],
            lifecycle_model=model,
            timezone=data["timezone"],
            wechat_oa=oas,
            wecom=wecom,
            api_access=data["api_access"],
            links=data["links"] or LinkKeys(),
            limits=data["limits"],
        )


class TenantsFileSchema(Schema):
    class Meta:
        unknown = EXCLUDE

    tenants = fields.List(fields.Nested(TenantSchema), required=True)

    @validates_schema(skip_on_field_errors=True)
    def _unique(self, data: dict, **kwargs: Any) -> None:
        errors: dict[int, dict[str, list[str]]] = {}
        seen_ids: dict[str, int] = {}
        seen_apps: dict[str, str] = {}
        seen_corps: dict[str, str] = {}
        for i, tenant in enumerate(data["tenants"]):
            if tenant.id in seen_ids:
                errors.setdefault(i, {})["id"] = [f"duplicate tenant id {tenant.id!r}"]
            seen_ids[tenant.id] = i
            for oa in tenant.wechat_oa:
                if oa.app_id in seen_apps:
                    errors.setdefault(i, {})["wechat_oa"] = [
                        f"app_id {oa.app_id} already belongs to tenant {seen_apps[oa.app_id]!r}"
                    ]
                seen_apps[oa.app_id] = tenant.id
            if tenant.wecom is not None:
                corp = tenant.wecom.corp_id
                if corp in seen_corps:
                    errors.setdefault(i, {})["wecom"] = [
                        f"corp_id {corp} already belongs to tenant {seen_corps[corp]!r}"
                    ]
                seen_corps[corp] = tenant.id
        if errors:
            raise ValidationError({"tenants": errors})


# --- loaded values ----------------------------------------------------------------------------


@dataclass(frozen=True)
class OfficialAccount:
    app_id: str
    name: str | None
    token: Secret
    encoding_aes_key: Secret | None
    app_secret: Secret | None
    plaintext_allowed: bool = False

    @property
    def accepts_plaintext(self) -> bool:
        """Plaintext callbacks carry an unsigned body: only without a key, or when allowed."""
        return self.encoding_aes_key is None or self.plaintext_allowed


@dataclass(frozen=True)
class WeComCorp:
    corp_id: str
    agent_id: int | None
    token: Secret
    encoding_aes_key: Secret
    secret: Secret | None


@dataclass(frozen=True)
class LinkKeys:
    """Which tracked-link key version signs, and until when the one before still verifies."""

    key_version: int = 1
    previous_valid_until: datetime | None = None


@dataclass(frozen=True)
class Tenant:
    id: str
    name: str
    mode: str
    lifecycle_model: str
    timezone: str
    wechat_oa: tuple[OfficialAccount, ...] = ()
    wecom: WeComCorp | None = None
    api_access: bool = True
    links: LinkKeys = LinkKeys()
    # Overrides only: .over(Settings.limits) gives the effective ones.
    limits: Limits = field(default_factory=Limits)

    def secrets(self) -> Iterator[Secret]:
        """Every secret this tenant's processes read (API secrets only with API access)."""
        for oa in self.wechat_oa:
            yield from (s for s in (oa.token, oa.encoding_aes_key, oa.app_secret) if s)
        if self.wecom is not None:
            corp = self.wecom
            yield from (s for s in (corp.token, corp.encoding_aes_key, corp.secret) if s)


@dataclass(frozen=True)
class TenantRegistry:
    """All tenants of a process, with the look-ups webhooks need (app_id and corp_id to tenant)."""

    tenants: tuple[Tenant, ...]
    source: str = ""
    _by_id: dict[str, Tenant] = field(default_factory=dict, repr=False)
    _by_app: dict[str, tuple[Tenant, OfficialAccount]] = field(default_factory=dict, repr=False)
    _by_corp: dict[str, Tenant] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        for tenant in self.tenants:
            self._by_id[tenant.id] = tenant
            for oa in tenant.wechat_oa:
                self._by_app[oa.app_id] = (tenant, oa)
            if tenant.wecom is not None:
                self._by_corp[tenant.wecom.corp_id] = tenant

    def get(self, tenant_id: str) -> Tenant | None:
        return self._by_id.get(tenant_id)

    def by_oa_app_id(self, app_id: str) -> tuple[Tenant, OfficialAccount] | None:
        return self._by_app.get(app_id)

    def by_corp_id(self, corp_id: str) -> Tenant | None:
        return self._by_corp.get(corp_id)

    def __iter__(self):
        return iter(self.tenants)

    def __len__(self) -> int:
        return len(self.tenants)


def parse_tenants(text: str, source: str = "<tenants>") -> TenantRegistry:
    """Validate a tenants YAML document; raise ConfigError naming line and field of each problem."""
    try:
        data, lines = _compose_with_lines(text)
    except _YamlDuplicateKey as dup:
        raise ConfigError(f"{source}:{dup.line}: duplicate key {dup.key!r}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{source}:1: expected a mapping with a 'tenants' list")
    try:
        loaded = TenantsFileSchema().load(data)
    except ValidationError as exc:
        problems = sorted(
            (
                (_line_for(path, lines) or 0, _dotted(path), msg)
                for path, msg in _flatten_errors(exc.messages)
            ),
            key=lambda p: (p[0], p[1]),
        )
        text_lines = [f"{source}:{line}: {where}: {msg}" for line, where, msg in problems]
        raise ConfigError(
            "invalid tenants file:\n  " + "\n  ".join(text_lines),
            details={"problems": [{"line": ln, "field": w, "message": m} for ln, w, m in problems]},
        ) from None
    return TenantRegistry(tuple(loaded["tenants"]), source=source)


API_SECRETS = ("secret", "app_secret")  # what calls the APIs; callbacks need token and key


def check_secrets(
    registry: TenantRegistry,
    environ: Mapping[str, str] | None = None,
    *,
    callbacks_only: bool = False,
) -> None:
    """Every secret named by ``*_env`` is set, or ConfigError naming each tenant and variable.

    Run at start (siyu dev, siyu ingest serve, siyu tenants check): a secret read only when a
    callback arrives would otherwise turn a configuration mistake into failing callbacks.
    ``callbacks_only``: ingest, which is given the callbacks' tokens and keys but not the API
    secrets it never uses (docs/security.md, "Least privilege").
    """
    environ = os.environ if environ is None else environ
    problems = []
    for tenant in registry:
        for secret in tenant.secrets():
            api = secret.path.rsplit(".", 1)[-1] in API_SECRETS
            if secret.is_set(environ) or (api and callbacks_only):
                continue
            why = (
                "or give the tenant api_access: false if it has no API access"
                if api
                else "it verifies and decrypts the tenant's callbacks"
            )
            problems.append(
                f"tenant {tenant.id}: {secret.path}_env names {secret.env}, "
                f"which is not set ({why})"
            )
    if problems:
        raise ConfigError(
            f"{registry.source or 'tenants'}: secrets missing from the environment:\n  "
            + "\n  ".join(problems),
            code="missing_secret",
        )


MIN_WEBHOOK_TOKEN = 16


def weak_webhook_tokens(registry: TenantRegistry, environ: Mapping[str, str]) -> list[str]:
    """Warnings for callback tokens shorter than 16 characters, naming the tenant and the field
    or variable, never the value: a plaintext OA callback is signed by the token alone
    (docs/security.md "Webhooks")."""
    tokens = [(t, oa.token) for t in registry for oa in t.wechat_oa]
    tokens += [(t, t.wecom.token) for t in registry if t.wecom is not None]
    warnings = []
    for tenant, secret in tokens:
        if 0 < secret.length(environ) < MIN_WEBHOOK_TOKEN:
            where = f"{secret.path}_env ({secret.env})" if secret.env else secret.path
            warnings.append(
                f"tenant {tenant.id}: {where} is shorter than {MIN_WEBHOOK_TOKEN} characters; "
                "use a long random token (it signs the callbacks)"
            )
    return warnings


NO_TENANTS = (
    "SIYU_TENANTS is not set: name the tenants file "
    '(see docs/operations.md "The tenants file"). Only `siyu dev` '
    "falls back to the demo tenants, whose webhook secrets are published in the repository"
)


def load_tenants(path: str | os.PathLike[str] | None) -> TenantRegistry:
    """The tenants of a file; None (SIYU_TENANTS unset) is refused (docs/security.md "Safe
    defaults")."""
    if path is None:
        raise ConfigError(NO_TENANTS)
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: tenants file not found (set SIYU_TENANTS)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read tenants file: {exc}") from None
    return parse_tenants(text, source=str(path))
