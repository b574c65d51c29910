from alembic import context

from saga_log.migrations import run_env
from saga_log.recorder.tables import metadata

run_env(context, metadata)
