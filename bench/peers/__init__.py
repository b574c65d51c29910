"""`make bench-peers`: the order saga on this project, on Restate and on DBOS (harness.py)."""
