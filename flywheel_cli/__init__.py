"""The `flywheel` command: one entry point over the product's commands (flywheel_cli/commands.py).

The top layer: it imports pipelines/, trigger/, monitoring/ and devserver/, and nothing imports it.
"""
