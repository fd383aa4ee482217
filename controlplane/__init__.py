"""A Kubernetes control plane for tests, built from Go modules and run on 127.0.0.1
(`python -m controlplane build|up|down`; see controlplane/README.md)."""
