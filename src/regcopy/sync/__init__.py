"""``regcopy sync``: mirroring many repositories from a plan.

Owns the sync package's public surface: the plan values of :mod:`regcopy.sync.model` and the plan
builders of :mod:`regcopy.sync.plan` (regcopy's plan YAML) and :mod:`regcopy.sync.skopeo` (skopeo
sync's YAML and ``--src docker``),
plus :func:`target_repository`, the naming rule for where a source repository lands, and the scheduler
that runs a plan (:func:`run_sync`, :class:`SyncOptions`, :class:`SyncReport`) with its run journal
(:class:`SyncJournal`).
"""

from __future__ import annotations

from regcopy.filters import RepoFilter, TagFilter
from regcopy.plansettings import Credentials, RegistryConfig
from regcopy.sync.journal import SyncJournal
from regcopy.sync.model import Naming, SourceKind, SyncEntry, SyncPlan
from regcopy.sync.plan import load_plan, parse_plan, target_repository
from regcopy.sync.scheduler import (
    ImageJob,
    ImageReport,
    PlannedImage,
    SyncBackend,
    SyncOptions,
    SyncReport,
    plan_images,
    run_sync,
)
from regcopy.sync.skopeo import from_skopeo_docker, from_skopeo_yaml

__all__ = (
    "Credentials",
    "ImageJob",
    "ImageReport",
    "PlannedImage",
    "from_skopeo_docker",
    "from_skopeo_yaml",
    "load_plan",
    "Naming",
    "parse_plan",
    "plan_images",
    "RegistryConfig",
    "RepoFilter",
    "SourceKind",
    "SyncBackend",
    "SyncEntry",
    "SyncJournal",
    "SyncOptions",
    "SyncPlan",
    "SyncReport",
    "TagFilter",
    "run_sync",
    "target_repository",
)
