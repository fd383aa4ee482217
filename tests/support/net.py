"""Loopback networking for tests: the product's own helpers (flywheel/loopback.py)."""
from flywheel.loopback import free_port, wait_until

__all__ = ["free_port", "wait_until"]
