"""Explain in one line why a pod is stuck or why a Job ended, from the API's own words.

Everything here reads plain dicts as the API server sends them (``status.reason``,
``containerStatuses[].state``, conditions), so a message names Kubernetes' reason and
message verbatim: ``ImagePullBackOff: Back-off pulling image "x"``.
"""

from __future__ import annotations

import json
from typing import Any


def _conditions(obj: dict[str, Any]) -> list[dict[str, Any]]:
    return list((obj.get("status") or {}).get("conditions") or [])


def condition(obj: dict[str, Any], kind: str) -> dict[str, Any] | None:
    for cond in _conditions(obj):
        if cond.get("type") == kind and cond.get("status") == "True":
            return cond
    return None


def _container_states(pod: dict[str, Any]) -> list[dict[str, Any]]:
    status = pod.get("status") or {}
    return [cs.get("state") or {} for cs in (status.get("containerStatuses") or [])]


def pending_reason(pod: dict[str, Any] | None) -> str:
    """Why a pod has not started: a waiting container's reason, else the scheduler's."""
    if pod is None:
        return "no pod was created for the Job (check the namespace's quota and the Job's events)"
    for state in _container_states(pod):
        waiting = state.get("waiting")
        if waiting and waiting.get("reason"):
            return f"{waiting['reason']}: {waiting.get('message') or 'no message'}"
    for cond in _conditions(pod):
        if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
            return f"{cond.get('reason') or 'Unschedulable'}: {cond.get('message') or 'no message'}"
    return f"the pod is {((pod.get('status') or {}).get('phase') or 'Pending').lower()}"


def is_running(pod: dict[str, Any]) -> bool:
    status = pod.get("status") or {}
    return status.get("phase") in ("Running", "Succeeded", "Failed") or any(
        "running" in s or "terminated" in s for s in _container_states(pod)
    )


def is_running_only(pod: dict[str, Any]) -> bool:
    """Started but not ended: its final status has not arrived yet."""
    return not any("terminated" in s for s in _container_states(pod)) and not (pod.get("status") or {}).get("reason")


def disruption(pod: dict[str, Any] | None) -> str | None:
    """Eviction, preemption or a node drain, as the kubelet or scheduler put it."""
    if pod is None:
        return None
    status = pod.get("status") or {}
    cond = condition(pod, "DisruptionTarget")
    if status.get("reason") == "Evicted":
        return f"the pod was evicted: {status.get('message') or 'no message'}"
    if status.get("reason") == "Preempting" or (cond and cond.get("reason") == "PreemptionByScheduler"):
        return f"the pod was preempted: {(cond or {}).get('message') or status.get('message') or 'no message'}"
    if cond is not None:
        why = cond.get("reason") or "DisruptionTarget"
        return f"the pod was disrupted ({why}): {cond.get('message') or 'no message'}"
    return None


def termination(pod: dict[str, Any] | None) -> tuple[str, str] | None:
    """(error type, explanation) of a container that ended badly, e.g. OOMKilled."""
    if pod is None:
        return None
    for state in _container_states(pod):
        term = state.get("terminated")
        if not term or term.get("exitCode") == 0:
            continue
        reason = term.get("reason") or "Error"
        code = term.get("exitCode")
        if reason == "OOMKilled":
            return "OutOfMemory", f"the container was OOMKilled (exit code {code}): it used more memory than its limit"
        detail = f": {term['message']}" if term.get("message") else ""
        return "PodFailed", f"the container ended with {reason} (exit code {code}){detail}"
    return None


def job_failure(job: dict[str, Any], pod: dict[str, Any] | None, deadline: int | None) -> tuple[str, str]:
    """(error type, explanation) of a failed Job and its pod."""
    failed = condition(job, "Failed") or {}
    reason = failed.get("reason")
    if reason == "DeadlineExceeded":
        return "DeadlineExceeded", f"deadline exceeded: the Job ran longer than active_deadline_seconds={deadline}"
    why = disruption(pod)
    if why is not None or reason == "PodFailurePolicy":
        return "PodDisrupted", why or f"the pod was disrupted: {failed.get('message') or 'no message'}"
    term = termination(pod)
    if term is not None:
        return term
    return "PodFailed", f"the Job failed ({reason or 'Failed'}): {failed.get('message') or 'no message'}"


def api_error(exc: BaseException) -> str:
    """An ApiException as ``HTTP 403 Forbidden: <message>`` — never its headers or raw body."""
    status = getattr(exc, "status", None)
    if status is None:
        text = str(exc).splitlines()[0] if str(exc) else ""
        return f"{type(exc).__name__}: {text}"[:500]
    reason = getattr(exc, "reason", None) or ""
    message = ""
    body = getattr(exc, "body", None)
    if body:
        try:
            parsed = json.loads(body)
            message = parsed.get("message") or ""
            reason = parsed.get("reason") or reason
        except (ValueError, AttributeError):
            message = str(body)[:300]
    return f"HTTP {status} {reason}: {message}".rstrip(": ")[:500]
