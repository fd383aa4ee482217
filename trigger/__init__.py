"""The retraining trigger: Alertmanager's webhook in, a training run on the newest labeled data out.

decide.py decides what a notification does (which alerts count, one run per alert group, a
cooldown, one run at a time); runs.py builds the span from the serving logs and starts the run
(here through the same command as `make run`, on a cluster through the KFP API); service.py is
the HTTP service (`python -m trigger`).
"""
