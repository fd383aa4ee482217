"""Development model server: TF Serving's REST and gRPC APIs in Python, for laptops and tests
where the TF Serving binary does not run (`make serve`, tests/serving/). Not part of the
product: no image ships it, and on a cluster TF Serving serves (serving/ holds its config,
flags and the clients). Start it with `python -m devserver`."""
