"""Loads the OpenAPI documents in openapi/ and bundles each into one self-contained document.

ipg.yaml and bank.yaml reference shared definitions in common.yaml; a served spec must not, so the
loader copies what is referenced into the document's own components.
"""

from __future__ import annotations

import copy
import functools
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mpesa_atm.operations import Role, operations

__all__ = [
    "OPERATION_PATHS",
    "SPEC_FILES",
    "Role",
    "inlined",
    "load_spec",
    "operation_definition",
    "read_document",
    "resolved",
    "spec_dir",
    "spec_path",
]

SPEC_FILES = ("common.yaml", "ipg.yaml", "bank.yaml", "control.yaml")

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml where it is installed: 10x faster


def spec_dir() -> Path:
    """The folder holding the OpenAPI documents: `openapi/` of the checkout, installed as the data
    package `mpesa_atm.openapi`."""
    return Path(str(resources.files("mpesa_atm.openapi")))


def spec_path(name: str) -> Path:
    return spec_dir() / name


@functools.cache
def read_document(name: str) -> dict[str, Any]:
    """The document `name` as written (shared: copy before changing it)."""
    with spec_path(name).open(encoding="utf-8") as fh:
        data: dict[str, Any] = yaml.load(fh, Loader=_Loader)
    return data


# operationId -> the path the harness serves it at (the document says "TBD").
OPERATION_PATHS: dict[str, str] = {op.id: op.path for op in operations().values()}


def load_spec(name: str, *, role: Role | None = None) -> dict[str, Any]:
    """The document `name` (e.g. "ipg.yaml") with every external reference bundled in.

    With `role`, the document as that role's mock serves it (control.yaml describes both mocks'
    control APIs): what is marked `x-mpesa-role` for the other role left out, enums marked
    `x-mpesa-enum-by-role` narrowed to this role's values, and the components left unused dropped.
    """
    document = copy.deepcopy(read_document(name))
    imported: dict[str, dict[str, Any]] = {}  # kind -> name -> component copied from another file

    def bundle(node: Any, source: str) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target_file, _, pointer = ref.partition("#")
                target_file = target_file or source
                if target_file != name:
                    _copy_component(target_file, pointer)
                return {**node, "$ref": f"#{pointer}"}
            return {key: bundle(value, source) for key, value in node.items()}
        if isinstance(node, list):
            return [bundle(item, source) for item in node]
        return node

    def _copy_component(target_file: str, pointer: str) -> None:
        parts = pointer.strip("/").split("/")
        if parts[0] != "components" or len(parts) != 3:
            raise ValueError(f"only components can be referenced across files, not {pointer}")
        _, kind, key = parts
        section = imported.setdefault(kind, {})
        if key in section:
            return
        section[key] = {}  # placeholder first: a component may reference itself
        section[key] = bundle(read_document(target_file)["components"][kind][key], target_file)

    bundled: dict[str, Any] = bundle(document, name)
    own = bundled.setdefault("components", {})
    for kind, section in imported.items():
        own[kind] = section | own.get(kind, {})
    if role is not None:
        bundled = _for_role(bundled, role)
        bundled["paths"] = {
            path: item
            for path, item in bundled["paths"].items()
            if any(isinstance(op, dict) and "operationId" in op for op in item.values())
        }
        _drop_unused_components(bundled)
    return bundled


def _for_role(node: Any, role: Role) -> Any:
    """`node` as `role`'s mock serves it: what is marked `x-mpesa-role` for the other role (an
    operation, an example, a parameter) left out, and each enum with `x-mpesa-enum-by-role` narrowed
    to the values of `role` (the operations a fault rule can name, the codes it can answer)."""
    if isinstance(node, list):
        return [_for_role(item, role) for item in node if not _for_other_role(item, role)]
    if not isinstance(node, dict):
        return node
    kept = {key: _for_role(value, role) for key, value in node.items() if not _for_other_role(value, role)}
    by_role = kept.get("x-mpesa-enum-by-role")
    if isinstance(by_role, dict):
        kept["enum"] = list(by_role[role])
    return kept


def _for_other_role(node: Any, role: Role) -> bool:
    return isinstance(node, dict) and node.get("x-mpesa-role", role) != role


_COMPONENT_REF = "#/components/"


def _drop_unused_components(document: dict[str, Any]) -> None:
    """Leaves out the components nothing left in `document` references (those of the other role's
    operations). Security schemes are named, not referenced: they stay."""
    components = document.get("components", {})
    used: set[tuple[str, str]] = set()
    pending: list[Any] = [{key: value for key, value in document.items() if key != "components"}]
    while pending:
        node = pending.pop()
        if isinstance(node, list):
            pending.extend(node)
        elif isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith(_COMPONENT_REF):
                kind, _, key = ref[len(_COMPONENT_REF) :].partition("/")
                if (kind, key) not in used:
                    used.add((kind, key))
                    pending.append(components[kind][key])
            pending.extend(value for name, value in node.items() if name != "$ref")
    for kind, section in components.items():
        if kind != "securitySchemes":
            components[kind] = {key: value for key, value in section.items() if (kind, key) in used}


def resolved(document: dict[str, Any], node: Any) -> Any:
    """`node` with its local references (`#/components/...`) followed in `document`, a bundled one."""
    while isinstance(node, dict) and "$ref" in node:
        target: Any = document
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def inlined(document: dict[str, Any], node: Any) -> Any:
    """`node` with every local reference in it replaced by what it points to, however deep (the
    documents' schemas hold no cycles): a schema a validator reads without resolving references on
    each call, several times faster."""
    node = resolved(document, node)
    if isinstance(node, dict):
        return {key: inlined(document, value) for key, value in node.items()}
    if isinstance(node, list):
        return [inlined(document, item) for item in node]
    return node


def operation_definition(operation_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The bundled document of the role that implements `operation_id`, and the operation's POST in it."""
    operation = operations()[operation_id]
    document = load_spec(f"{operation.role}.yaml")
    return document, document["paths"][operation.path]["post"]
