"""Shared pieces of Flywheel: names and typed settings used by every part."""
