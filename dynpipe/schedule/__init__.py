"""Scheduled runs of a pipeline module: managed schedules fired by ``dynpipe scheduler``, or Kubernetes CronJobs."""

from .manage import ScheduleSpec, create_schedule, list_schedule_runs

__all__ = ["ScheduleSpec", "create_schedule", "list_schedule_runs"]
