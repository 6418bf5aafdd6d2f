"""The Alertmanager webhook payload (version 4), validated; unknown fields are ignored.

Alertmanager may add fields in later versions; a receiver that rejected them would lose
alerts, so only what the responder relies on is checked, and strictly.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from monitoriza.exceptions import MonitorizaError

Text = Annotated[str, StringConstraints(max_length=65536)]
Key = Annotated[str, StringConstraints(min_length=1, max_length=4096)]


class WebhookError(MonitorizaError):
    """The payload is not an Alertmanager v4 notification; ``details`` says where."""

    def __init__(self, message: str, details: list[str]) -> None:
        super().__init__(message)
        self.details = details


class Lenient(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class Alert(Lenient):
    status: Literal["firing", "resolved"]
    labels: dict[str, Text]
    annotations: dict[str, Text] = Field(default_factory=dict)
    startsAt: Annotated[str, StringConstraints(min_length=1, max_length=64)]  # noqa: N815
    endsAt: Annotated[str, StringConstraints(max_length=64)] = ""  # noqa: N815
    generatorURL: Text = ""  # noqa: N815
    fingerprint: Annotated[str, StringConstraints(min_length=1, max_length=64)]

    def starts(self) -> datetime:
        return datetime.fromisoformat(self.startsAt.replace("Z", "+00:00"))


class Notification(Lenient):
    version: Literal["4"]
    receiver: Key
    status: Literal["firing", "resolved"]
    alerts: Annotated[list[Alert], Field(max_length=10000)]
    groupLabels: dict[str, Text] = Field(default_factory=dict)  # noqa: N815
    commonLabels: dict[str, Text] = Field(default_factory=dict)  # noqa: N815
    commonAnnotations: dict[str, Text] = Field(default_factory=dict)  # noqa: N815
    externalURL: Text = ""  # noqa: N815
    groupKey: Key  # noqa: N815
    truncatedAlerts: Annotated[int, Field(ge=0, le=1_000_000_000)] = 0  # noqa: N815


def parse_notification(data: object) -> Notification:
    """Validate decoded JSON as a v4 notification, or raise WebhookError with every problem."""
    if not isinstance(data, dict):
        raise WebhookError("the body must be a JSON object", [])
    try:
        notification = Notification.model_validate(data)
    except ValidationError as exc:
        details = [f"{'.'.join(str(p) for p in error['loc']) or '(root)'}: {error['msg']}"
                   for error in exc.errors(include_url=False)]
        raise WebhookError("not an Alertmanager v4 webhook payload", details) from None
    for index, alert in enumerate(notification.alerts):
        try:
            alert.starts()
        except ValueError:
            raise WebhookError("not an Alertmanager v4 webhook payload",
                               [f"alerts.{index}.startsAt: not an RFC 3339 time"]) from None
    return notification
