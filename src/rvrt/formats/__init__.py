"""Readers for weight files of other frameworks (no dependency on those frameworks)."""
