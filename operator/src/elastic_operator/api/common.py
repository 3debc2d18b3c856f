"""Building blocks shared by both kinds: the model base class, Kubernetes conditions and a typed subset of the pod
fields a worker needs (env, resources, volumes, mounts, tolerations).

Conventions every model follows (the CRD generator relies on them):

- Field names are snake_case in Python and camelCase on the wire (`model_dump()` writes camelCase by default).
- Every field carries a docstring; it becomes the field's description in the CRD, so `kubectl explain` documents it.
- Models are strict (`"3"` is not an integer, unknown fields are rejected), like the API server with a structural
  schema, so a manifest the model accepts is one the server accepts and the other way round.
- Cross-field rules are written twice, on purpose and side by side: as a CEL rule (`x-kubernetes-validations`, what
  the API server enforces) and as a Python check (what `validate_*` reports). A parity test runs the invalid-manifest
  corpus through both.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, ClassVar, Final, Literal, Self

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    Strict,
    StrictInt,
    StrictStr,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError

GROUP = "elastic.training"
VERSION = "v1alpha1"
API_VERSION: Final = "elastic.training/v1alpha1"

# --- bounds (they keep CEL within the API server's cost budget and objects well under etcd's size limit) -----------
MAX_NAME = 253  # DNS subdomain
MAX_LABEL = 63  # DNS label, label values
MAX_SHORT = 256  # short strings: keys, reasons, enum-like values
MAX_PATH = 4096  # file paths
MAX_ARG = 2048  # one command/args item
MAX_VALUE = 32768  # env values, condition messages
MAX_ARGS = 128
MAX_ENV = 256
MAX_VOLUMES = 64
MAX_TOLERATIONS = 64
MAX_MAP = 64  # labels, annotations, node selectors, metrics maps
MAX_CONDITIONS = 16

Name = Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
"""A Kubernetes object name or similar identifier."""
ShortStr = Annotated[str, StringConstraints(max_length=MAX_SHORT)]
Path = Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH)]
Arg = Annotated[str, StringConstraints(max_length=MAX_ARG)]
Value = Annotated[str, StringConstraints(max_length=MAX_VALUE)]
Time = Annotated[datetime, Strict(False)]
"""An RFC 3339 timestamp (ISO strings are accepted as input; the wire form is `2006-01-02T15:04:05Z`)."""

QUANTITY_RULE = {
    "rule": "type(self) == int ? self >= 0 : isQuantity(self) && !self.startsWith('-')",
    "message": "must be a non-negative Kubernetes quantity such as 2, 500m or 16Gi",
}
QUANTITY_PATTERN = r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei|e[0-9]+)?$"
Quantity = Annotated[
    Annotated[StrictInt, Field(ge=0)] | Annotated[str, StringConstraints(max_length=64, pattern=QUANTITY_PATTERN)],
    WithJsonSchema({"x-kubernetes-int-or-string": True, "maxLength": 64, "x-kubernetes-validations": [QUANTITY_RULE]}),
]
"""A resource quantity (an integer, or a string such as `500m`, `16Gi`)."""

IntOrString = Annotated[
    StrictInt | Annotated[StrictStr, StringConstraints(max_length=MAX_SHORT)],
    WithJsonSchema({"x-kubernetes-int-or-string": True}),
]


def list_map(*keys: str) -> dict[str, Any]:
    """Schema extras of a list that is really a map keyed by `keys` (server-side apply merges it by key)."""
    return {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": list(keys)}


@dataclass(frozen=True)
class Rule:
    """A cross-field rule, written twice: `cel` for the API server (`x-kubernetes-validations` on the model's schema)
    and `check` for Python (run when the model is validated). `field` is the offending field relative to the model
    (`.minWorkers`); both the server's and the model's errors name it. A rule without `check` is server-only; one
    with an empty `cel` is Python-only (the CRD says it another way, e.g. metadata.name's pattern)."""

    cel: str
    message: str
    field: str = ""
    check: Callable[[Any], bool] | None = None

    def as_cel(self) -> dict[str, str]:
        out = {"rule": self.cel, "message": self.message}
        if self.field:
            out["fieldPath"] = self.field
        return out


class ApiModel(BaseModel):
    """Base of every API model: camelCase aliases, strict types, unknown fields rejected, docstrings as docs."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="forbid",
        strict=True,
        use_attribute_docstrings=True,
        frozen=False,
    )

    RULES: ClassVar[tuple[Rule, ...]] = ()
    """Cross-field rules of this model (see Rule)."""

    @model_validator(mode="after")
    def _check_rules(self) -> Self:
        for rule in type(self).RULES:
            if rule.check is not None and not rule.check(self):
                raise PydanticCustomError("rule", "{message}", {"message": rule.message, "field": rule.field})
        return self

    @classmethod
    def __get_pydantic_json_schema__(cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler) -> JsonSchemaValue:
        schema = super().__get_pydantic_json_schema__(core_schema, handler)
        own = cls.__dict__.get("RULES", ())
        if own:
            target = handler.resolve_ref_schema(schema)
            rules = [r.as_cel() for r in own if r.cel]
            if rules:
                target["x-kubernetes-validations"] = rules
        return schema

    def to_json(self) -> dict[str, Any]:
        """The wire form: camelCase keys, unset optional fields left out."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


# --- conditions ----------------------------------------------------------------------------------------------------


class Condition(ApiModel):
    """One aspect of the object's state, in the Kubernetes condition convention."""

    type: Annotated[str, StringConstraints(min_length=1, max_length=316)]
    """Type of the condition in CamelCase, e.g. `Running`, `Succeeded`, `InvalidSpec`."""
    status: Literal["True", "False", "Unknown"]
    """Whether the condition holds: True, False or Unknown."""
    reason: Annotated[str, StringConstraints(max_length=1024)] = ""
    """A CamelCase, machine-readable reason for the condition's last transition."""
    message: Value = ""
    """A human-readable explanation of the last transition."""
    last_transition_time: Time | None = None
    """When the condition last changed from one status to another."""
    observed_generation: Annotated[int, Field(ge=0)] | None = None
    """The object's metadata.generation the condition was computed from."""


Conditions = Annotated[
    list[Condition],
    Field(max_length=MAX_CONDITIONS, json_schema_extra=list_map("type")),
]


class ObjectMeta(BaseModel):
    """The subset of Kubernetes object metadata the operator reads; other metadata fields are kept as they are."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        serialize_by_alias=True,
        extra="allow",
    )

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)
    uid: str | None = None
    generation: int | None = None


# --- pod fields (a typed subset of core/v1) ------------------------------------------------------------------------


class KeySelector(ApiModel):
    """Selects one key of a Secret or ConfigMap."""

    name: Name
    """Name of the Secret or ConfigMap, in the job's namespace."""
    key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
    """The key whose value is used."""
    optional: bool | None = None
    """When true, a missing object or key is not an error."""


class FieldSelector(ApiModel):
    """Selects a field of the worker pod (the downward API)."""

    field_path: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SHORT)]
    """Path of the field, e.g. `metadata.name`, `status.podIP`."""


class EnvVarSource(ApiModel):
    """Where an environment variable's value comes from; exactly one source."""

    RULES = (
        Rule(
            "[has(self.secretKeyRef), has(self.configMapKeyRef), has(self.fieldRef)].filter(x, x).size() == 1",
            "exactly one of secretKeyRef, configMapKeyRef or fieldRef must be set",
            check=lambda m: [m.secret_key_ref, m.config_map_key_ref, m.field_ref].count(None) == 2,
        ),
    )

    secret_key_ref: KeySelector | None = None
    """A key of a Secret."""
    config_map_key_ref: KeySelector | None = None
    """A key of a ConfigMap."""
    field_ref: FieldSelector | None = None
    """A field of the worker pod."""


ENV_NAME = r"^[-._a-zA-Z][-._a-zA-Z0-9]*$"


class EnvVar(ApiModel):
    """An environment variable of the training container."""

    RULES = (
        Rule(
            "!(has(self.value) && has(self.valueFrom))",
            "value and valueFrom are mutually exclusive",
            check=lambda m: m.value is None or m.value_from is None,
        ),
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_SHORT, pattern=ENV_NAME)]
    """Name of the variable."""
    value: Value | None = None
    """Literal value. In a sweep's trial template it may hold `${params.NAME}` placeholders."""
    value_from: EnvVarSource | None = None
    """Take the value from a Secret, a ConfigMap or a pod field instead."""


class ResourceRequirements(ApiModel):
    """Compute resources of one worker (each worker pod runs `nprocPerWorker` processes sharing them)."""

    limits: Annotated[dict[Annotated[str, StringConstraints(max_length=MAX_SHORT)], Quantity], Field(max_length=32)] = (
        Field(default_factory=dict)
    )
    """Maximum resources, e.g. `cpu: 4`, `memory: 16Gi`, `nvidia.com/gpu: 8`. Extended resources such as GPUs
    are requested here (requests default to limits)."""
    requests: Annotated[
        dict[Annotated[str, StringConstraints(max_length=MAX_SHORT)], Quantity], Field(max_length=32)
    ] = Field(default_factory=dict)
    """Resources the scheduler reserves for the worker, e.g. `cpu: 2`, `memory: 8Gi`."""


class PersistentVolumeClaimSource(ApiModel):
    """Mount an existing PersistentVolumeClaim."""

    claim_name: Name
    """Name of the PersistentVolumeClaim in the job's namespace."""
    read_only: bool | None = None
    """Mount read-only."""


class HostPathSource(ApiModel):
    """Mount a directory of the node (for single-node and development clusters; not portable)."""

    path: Path
    """Absolute path on the node."""
    type: Literal["", "DirectoryOrCreate", "Directory", "FileOrCreate", "File", "Socket"] | None = None
    """What must exist at the path (as in core/v1 HostPathVolumeSource); empty means no check."""


class EmptyDirSource(ApiModel):
    """A scratch directory that lives as long as the pod."""

    medium: Literal["", "Memory"] | None = None
    """Storage medium: empty for the node's disk, `Memory` for tmpfs (e.g. a larger /dev/shm)."""
    size_limit: Quantity | None = None
    """Upper bound of the directory's size."""


class KeyToPath(ApiModel):
    """Project one key of a ConfigMap or Secret to a file."""

    key: Annotated[str, StringConstraints(min_length=1, max_length=MAX_NAME)]
    """The key to project."""
    path: Path
    """Relative path of the file inside the volume."""


class ConfigMapSource(ApiModel):
    """Mount a ConfigMap's keys as files."""

    name: Name
    """Name of the ConfigMap."""
    items: Annotated[list[KeyToPath], Field(max_length=MAX_MAP)] | None = None
    """Only these keys, at these paths (default: every key, named after the key)."""
    optional: bool | None = None
    """When true, a missing ConfigMap is not an error."""


class SecretSource(ApiModel):
    """Mount a Secret's keys as files."""

    secret_name: Name
    """Name of the Secret."""
    items: Annotated[list[KeyToPath], Field(max_length=MAX_MAP)] | None = None
    """Only these keys, at these paths (default: every key, named after the key)."""
    optional: bool | None = None
    """When true, a missing Secret is not an error."""


DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_1035_LABEL = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"


class Volume(ApiModel):
    """A volume of the worker pod; exactly one source."""

    RULES = (
        Rule(
            "[has(self.persistentVolumeClaim), has(self.hostPath), has(self.emptyDir), has(self.configMap),"
            " has(self.secret)].filter(x, x).size() == 1",
            "exactly one of persistentVolumeClaim, hostPath, emptyDir, configMap or secret must be set",
            check=lambda m: len(m.sources()) == 1,
        ),
    )

    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL, pattern=DNS_LABEL)]
    """Name of the volume, referred to by volumeMounts[].name."""
    persistent_volume_claim: PersistentVolumeClaimSource | None = None
    """An existing PersistentVolumeClaim."""
    host_path: HostPathSource | None = None
    """A directory of the node."""
    empty_dir: EmptyDirSource | None = None
    """A scratch directory."""
    config_map: ConfigMapSource | None = None
    """A ConfigMap's keys as files."""
    secret: SecretSource | None = None
    """A Secret's keys as files."""

    def sources(self) -> list[str]:
        return [
            k
            for k in ("persistent_volume_claim", "host_path", "empty_dir", "config_map", "secret")
            if getattr(self, k) is not None
        ]


class VolumeMount(ApiModel):
    """Where a volume appears in the training container."""

    name: Annotated[str, StringConstraints(min_length=1, max_length=MAX_LABEL)]
    """Name of a volume in `volumes`."""
    mount_path: Annotated[str, StringConstraints(min_length=1, max_length=MAX_PATH, pattern=r"^/")]
    """Absolute path in the container."""
    sub_path: Annotated[str, StringConstraints(max_length=MAX_PATH)] | None = None
    """Mount only this sub-path of the volume."""
    read_only: bool | None = None
    """Mount read-only."""


class Toleration(ApiModel):
    """Lets workers run on nodes with a matching taint (e.g. dedicated GPU nodes)."""

    RULES = (
        Rule(
            "!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
            "value must be empty when operator is Exists",
            ".value",
            check=lambda m: m.operator != "Exists" or not m.value,
        ),
        Rule(
            "(has(self.key) && self.key != '') || (has(self.operator) && self.operator == 'Exists')",
            "an empty key needs operator Exists (it then tolerates every taint)",
            ".key",
            check=lambda m: bool(m.key) or m.operator == "Exists",
        ),
    )

    key: Annotated[str, StringConstraints(max_length=MAX_SHORT)] | None = None
    """Taint key to tolerate; empty with operator Exists tolerates every taint."""
    operator: Literal["Equal", "Exists"] | None = None
    """`Equal` (the default) matches key and value; `Exists` matches any value."""
    value: Annotated[str, StringConstraints(max_length=MAX_LABEL)] | None = None
    """Taint value to match with operator Equal."""
    effect: Literal["", "NoSchedule", "PreferNoSchedule", "NoExecute"] | None = None
    """Taint effect to match; empty matches every effect."""
    toleration_seconds: int | None = None
    """With effect NoExecute: how long the worker stays after the taint appears (default: forever)."""


LabelMap = Annotated[
    dict[
        Annotated[str, StringConstraints(max_length=MAX_SHORT)],
        Annotated[str, StringConstraints(max_length=MAX_LABEL)],
    ],
    Field(max_length=MAX_MAP),
]
AnnotationMap = Annotated[
    dict[Annotated[str, StringConstraints(max_length=MAX_SHORT)], Value],
    Field(max_length=MAX_MAP),
]
