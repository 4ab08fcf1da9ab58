"""Entrypoints: every long-running process and the command line live here."""
