from alembic import context

from saga_log.recorder.tables import metadata
from saga_log.runtime import run_env

run_env(context, metadata)
