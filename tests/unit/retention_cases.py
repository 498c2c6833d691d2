"""Shared cases of the retention tests (parse, planner, delete): the reference time, rules, documents."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from typing import Any

from regcopy.locations import parse_namespace
from regcopy.reference import Repository
from regcopy.retention import PruneRule

NOW = datetime(2024, 6, 1, tzinfo=UTC)
REPO = "reg.example:5000/team/app"


def day(n: int) -> datetime:
    """``n`` days before NOW."""
    return NOW - timedelta(days=n)


def scope(text: str, kind: str = "repository") -> Any:
    """A rule's scope from text: a repository, or a namespace (a registry or a prefix in one)."""
    return Repository.parse(text) if kind == "repository" else parse_namespace(text)


def rule(**fields: Any) -> PruneRule:
    protect = tuple(re.compile(p, re.ASCII) for p in fields.pop("protect", ()))
    where = scope(fields.pop("scope", REPO), fields.get("kind", "repository"))
    return PruneRule(fields.pop("name", "r"), where, protect=protect, **fields)


def doc(*rules: dict[str, Any], **top: Any) -> dict[str, Any]:
    return {**top, "prune": list(rules) or [{"repository": REPO, "keep_latest": 3}]}

