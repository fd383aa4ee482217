"""What one Alertmanager notification does. Pure bookkeeping, no I/O: the service feeds it
notifications and run outcomes, and records what it answers.

Alertmanager's webhook (`webhook_config`, payload version 4) sends a group of alerts; it resends
a still-firing group every `repeat_interval` and whenever the group changes. One firing
episode of a group starts at most one run: its key is the group key and the earliest
`startsAt` of the alerts that trigger. A group that resolves and fires again later is a new
episode (after the cooldown).
"""
from __future__ import annotations

import dataclasses
import time
from typing import Callable

from flywheel.params import TriggerParams

STARTED, DUPLICATE, BUSY, COOLDOWN, IGNORED, WAITING = "started", "duplicate", "busy", "cooldown", "ignored", "waiting"
DECISIONS = (STARTED, DUPLICATE, BUSY, COOLDOWN, IGNORED, WAITING)


class NotificationError(ValueError):
    """A body that is not an Alertmanager webhook notification (answered with 400)."""


@dataclasses.dataclass(frozen=True)
class Alert:
    name: str
    labels: dict
    annotations: dict
    starts_at: str
    status: str


@dataclasses.dataclass(frozen=True)
class Notification:
    group_key: str
    status: str
    receiver: str
    alerts: tuple[Alert, ...]


def parse(payload) -> Notification:
    """A webhook body (already JSON-decoded) -> Notification; NotificationError says what is wrong."""
    if not isinstance(payload, dict):
        raise NotificationError("expected Alertmanager's webhook JSON object (webhook_config, version 4)")
    if str(payload.get("version", "")) != "4":
        raise NotificationError(f"webhook payload version {payload.get('version')!r}; this service reads version 4")
    alerts = payload.get("alerts")
    if not isinstance(alerts, list):
        raise NotificationError("'alerts' must be a list")
    parsed = []
    for i, alert in enumerate(alerts):
        labels = alert.get("labels") if isinstance(alert, dict) else None
        if not isinstance(labels, dict) or not isinstance(labels.get("alertname"), str):
            raise NotificationError(f"alerts[{i}] has no labels.alertname")
        parsed.append(Alert(labels["alertname"], {str(k): str(v) for k, v in labels.items()},
                            {str(k): str(v) for k, v in (alert.get("annotations") or {}).items()},
                            str(alert.get("startsAt", "")), str(alert.get("status", payload.get("status", "")))))
    group_key = payload.get("groupKey")
    if not isinstance(group_key, str) or not group_key:
        raise NotificationError("'groupKey' must be a non-empty string")
    return Notification(group_key, str(payload.get("status", "")), str(payload.get("receiver", "")), tuple(parsed))


@dataclasses.dataclass
class Decision:
    action: str
    reason: str
    key: str = ""
    alert: Alert | None = None

    def as_dict(self) -> dict:
        out = {"action": self.action, "reason": self.reason, "key": self.key}
        if self.alert:
            out["alert"] = dataclasses.asdict(self.alert)
        return out


class Decider:
    """Which notification starts a run. `begin` reserves the run slot (the caller then builds the
    span and starts the run, and calls `started`, `waiting` or `finished`)."""

    def __init__(self, params: TriggerParams, clock: Callable[[], float] = time.time):
        self.params, self.clock = params, clock
        self.handled: set[str] = set()      # episodes that started a run
        self.in_flight: str = ""            # the key of the run in progress ("" = none)
        self.in_flight_since = 0.0
        self.last_start = -float("inf")

    def begin(self, notification: Notification) -> Decision:
        firing = [a for a in notification.alerts if a.status == "firing" and a.name in self.params.alerts]
        if notification.status != "firing" or not firing:
            names = sorted({a.name for a in notification.alerts})
            return Decision(IGNORED, f"no firing alert of {list(self.params.alerts)} (got {notification.status} {names})")
        first = min(firing, key=lambda a: a.starts_at)
        key = f"{notification.group_key}@{first.starts_at}"
        now = self.clock()
        if key in self.handled:
            return Decision(DUPLICATE, "this alert group's episode already started a run", key, first)
        if self.in_flight and now - self.in_flight_since > self.params.run_timeout_s:
            self.in_flight = ""   # a run that never reported back no longer blocks
        if self.in_flight:
            return Decision(BUSY, f"a run is in flight (started by {self.in_flight})", key, first)
        left = self.last_start + self.params.cooldown_s - now
        if left > 0:
            return Decision(COOLDOWN, f"the last run started {now - self.last_start:.0f}s ago; "
                            f"cooldown {self.params.cooldown_s:g}s ({left:.0f}s left)", key, first)
        self.in_flight, self.in_flight_since = key, now
        return Decision(STARTED, f"{first.name} is firing", key, first)

    def waiting(self, key: str) -> None:
        """The span had too few labeled rows: no run; the next notification tries again."""
        if self.in_flight == key:
            self.in_flight = ""

    def started(self, key: str) -> None:
        self.handled.add(key)
        self.last_start = self.clock()

    def finished(self, key: str) -> None:
        if self.in_flight == key:
            self.in_flight = ""

    def restore(self, key: str, at: float) -> None:
        """A run recorded before a restart (the service's event file): its episode stays handled
        and the cooldown counts from it."""
        self.handled.add(key)
        self.last_start = max(self.last_start, at)
