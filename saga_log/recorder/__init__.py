"""The saga history: records every event and derives each saga's state for people."""
