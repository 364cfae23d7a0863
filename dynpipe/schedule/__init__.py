"""Scheduled runs of a pipeline module: a local cron loop, or a Kubernetes CronJob."""
