"""Running one step of a playbook: check it, then run it, and say what happened.

:class:`ActionRunner` joins the two halves kept apart on purpose: the pure checks
(:mod:`monitoriza.healing.action_checks`: placeholders, allow-lists, container names) and the
executors that touch the world (:mod:`monitoriza.healing.executors`). Only a step the checks
let through reaches an executor.

Refusals. :meth:`ActionRunner.check` raises :class:`ActionRefused` (a placeholder that cannot
be filled safely, a command not on the allow-list, a URL outside it, an invalid container
name). :meth:`ActionRunner.run` never raises for a refusal or for a failure of the target: it
returns an :class:`ActionResult` with ``ok=False``, and ``refused=True`` when nothing was
attempted. Whether to run at all (dry-run included) is the policy's decision
(:mod:`monitoriza.healing.policy`), not the runner's: the healer only calls :meth:`run` for an
action the policy let act, and :meth:`describe` for what a dry run would have done.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

from monitoriza.healing import action_checks, executors
from monitoriza.healing.action_checks import (
    CONTAINER_NAME,
    ActionRefused,
    AllowList,
    HealingAction,
)
from monitoriza.healing.executors import COMMAND_ENV
from monitoriza.healing.placeholders import ActionContext, PlaceholderError

__all__ = [
    "COMMAND_ENV",
    "CONTAINER_NAME",
    "ActionContext",
    "ActionRefused",
    "ActionResult",
    "ActionRunner",
    "HealingAction",
    "PlaceholderError",
]


@dataclass(frozen=True, slots=True)
class ActionResult:
    """What happened when an action ran, or why it did not.

    ``action`` is the kind (``command``, ``http``, ``docker_restart``); ``target`` is what it
    acted on: the rendered ``argv[0]``, URL or container name, or the unrendered template when
    rendering failed. ``refused`` is True when the checks refused the action and nothing was
    attempted.
    """

    ok: bool
    action: str
    target: str
    detail: str
    duration: float
    refused: bool = False


class ActionRunner:
    """Checks healing actions against the allow-lists (see :class:`AllowList` for the
    arguments) and runs those that pass."""

    def __init__(
        self,
        allowed_commands: Sequence[str],
        allowed_urls: Sequence[str],
        default_docker_url: str | None = None,
    ) -> None:
        self.allow = AllowList(allowed_commands, allowed_urls, default_docker_url)

    @property
    def allowed_commands(self) -> frozenset[str]:
        return self.allow.allowed_commands

    def check(self, action: HealingAction, context: ActionContext) -> None:
        """Raise :class:`ActionRefused` if running ``action`` for ``context`` would be refused."""
        self.allow.prepare(action, context)

    def describe(self, action: HealingAction, context: ActionContext) -> str:
        """What running ``action`` would do, for dry runs and the audit log.

        For a refused action: ``refused: <reason>``. Never runs anything.
        """
        try:
            prepared = self.allow.prepare(action, context)
        except ActionRefused as exc:
            return f"refused: {exc}"
        return action_checks.describe(prepared)

    def run(self, action: HealingAction, context: ActionContext) -> ActionResult:
        """Check ``action`` and, unless refused, run it. Never raises for a refusal or a
        failing target (see the module docstring)."""
        started = time.monotonic()
        try:
            prepared = self.allow.prepare(action, context)
        except ActionRefused as exc:
            return ActionResult(ok=False, action=action.action,
                                target=action_checks.template_target(action),
                                detail=f"refused: {exc}",
                                duration=time.monotonic() - started, refused=True)
        ok, detail = executors.execute(prepared)
        return ActionResult(ok=ok, action=action.action, target=action_checks.target(prepared),
                            detail=detail, duration=time.monotonic() - started)
