"""Helpers shared by the tests: one package, imported one way (`from tests.support.x import y`)."""
