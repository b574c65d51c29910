"""Sagas, choreographed: `saga_log.runtime` is the library every service embeds;
`saga_log.recorder` is the saga history (a service of its own); `saga_log.ops` holds the
operator and demo commands (`python -m saga_log --help`)."""
