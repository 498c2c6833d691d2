"""``regcopy sync``: mirroring many repositories from a plan.

Owns the sync package's public surface: the plan values of :mod:`regcopy.sync.model` and the plan
builders of :mod:`regcopy.sync.plan` (regcopy's plan YAML) and :mod:`regcopy.sync.skopeo` (skopeo
sync's YAML and ``--src docker``), plus :func:`target_repository`, the naming rule for where a source
repository lands, and the scheduler that runs a plan (:func:`run_sync`, :class:`SyncOptions`,
:class:`SyncReport`, :class:`SyncBackend`) with its run journal (:class:`SyncJournal`).
A plan's ``registries:`` entries are :class:`~regcopy.settings.Overrides` (``RegistryConfig`` is
their former name, kept for callers that import it from here).
"""

from __future__ import annotations

from regcopy.filters import RepoFilter, TagFilter
from regcopy.settings import Credentials, Overrides
from regcopy.sync.discover import SyncBackend
from regcopy.sync.journal import SyncJournal
from regcopy.sync.model import ImageJob, Naming, SourceKind, SyncEntry, SyncOptions, SyncPlan
from regcopy.sync.plan import load_plan, parse_plan, target_repository
from regcopy.sync.report import ImageReport, SyncReport
from regcopy.sync.scheduler import PlannedImage, plan_images, run_sync
from regcopy.sync.skopeo import from_skopeo_dir, from_skopeo_docker, from_skopeo_yaml

RegistryConfig = Overrides

__all__ = (
    "Credentials",
    "ImageJob",
    "ImageReport",
    "Naming",
    "Overrides",
    "PlannedImage",
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
    "from_skopeo_dir",
    "from_skopeo_docker",
    "from_skopeo_yaml",
    "load_plan",
    "parse_plan",
    "plan_images",
    "run_sync",
    "target_repository",
)
