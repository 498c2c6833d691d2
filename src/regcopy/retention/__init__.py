"""Retention: which tags of a repository go, and deleting them safely by digest.

This package owns ``regcopy prune`` and the deletion core that sync's ``delete_extra`` reuses:

* the model (:mod:`~regcopy.retention.model`) — :class:`PruneRule` (one repository or namespace:
  ``keep_latest`` N by semver or by the config's ``created`` time, anchored ``protect`` regexes,
  ``older_than``, a per-repository ``cap``), :class:`PrunePlan`, the per-repository
  :class:`RepositoryPlan` and the JSON-ready :class:`PruneReport`;
* the parser (:mod:`~regcopy.retention.parse`) — :func:`parse_prune` / :func:`load_prune` for a
  standalone file or the ``prune:`` section of a sync plan;
* the planner (:mod:`~regcopy.retention.planner`) — pure functions (:func:`plan_repository`,
  :func:`plan_deletions`) from tag → digest, digest → created time and index → children to a
  :class:`RepositoryPlan`;
* the deletion core (:mod:`~regcopy.retention.delete`) — :func:`delete_tags` (given tags of one
  repository), over a :class:`PruneStore`: a store of the contract (:mod:`regcopy.stores.base`)
  that HEADs manifests with their media type and deletes them (a registry repository);
* the run (:mod:`~regcopy.retention.run`) — :func:`run_prune`, a whole plan, over a
  :class:`PruneBackend` (catalogs and stores: a :class:`regcopy.Client` is one).

Retention sits below sync (whose ``delete_extra`` imports it) and never sees a client or HTTP.

Distribution deletes a *manifest* by digest, which takes every tag on it along (and 2.8.2 refuses a
DELETE by tag), so the unit of deletion is a digest: a digest is deleted only if every tag on it is
marked for deletion and it is not a manifest of an index that stays (children of kept indexes,
nested ones included). Deletions run parents first, so an interrupted or capped run never leaves a
kept index pointing at a deleted child; a cap keeps a prefix of that order.

Rule semantics (a tag stays if *any* keep condition holds):

* ``protect`` — tags fully matching a regex stay, and do not count towards ``keep_latest``;
* ``keep_latest`` N — with ``order: semver`` the images of the N highest versions (Masterminds
  parsing, as sync's ``latest``) stay; tags that are not versions are left to ``older_than`` (kept
  without it); with ``order: created`` the N most recently created images stay. N counts images,
  not tags: ``1.2.3``, ``1.2`` and ``1`` on one digest are one;
* ``older_than`` — of the rest, only images created before ``now - older_than`` go.

A creation time is the image config's ``created``; for an index, its
``org.opencontainers.image.created`` annotation, else its first image's ``created``. Times at or
before 1980-01-01T00:00:01Z (Go's zero time, the Unix epoch, Buildpacks' fixed date: what
reproducible builds write) are *unknown*: such images are never deleted by age nor ranked by time.
"""

from __future__ import annotations

from regcopy.retention.delete import PruneStore, delete_tags
from regcopy.retention.model import (
    Decision,
    DeletionBudget,
    PrunePlan,
    PruneReport,
    PruneRule,
    RepositoryPlan,
    RepositoryReport,
)
from regcopy.retention.parse import load_prune, parse_duration, parse_prune
from regcopy.retention.planner import parse_created, plan_deletions, plan_repository
from regcopy.retention.run import PruneBackend, run_prune

__all__ = (
    "Decision",
    "DeletionBudget",
    "PruneBackend",
    "PrunePlan",
    "PruneReport",
    "PruneRule",
    "PruneStore",
    "RepositoryPlan",
    "RepositoryReport",
    "delete_tags",
    "load_prune",
    "parse_created",
    "parse_duration",
    "parse_prune",
    "plan_deletions",
    "plan_repository",
    "run_prune",
)
