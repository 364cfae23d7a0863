"""Embedded store: SQLite metadata, content-addressed artifacts, materializers, Client."""
