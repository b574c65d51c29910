from alembic import context

from saga_log.runtime import run_env
from services.fare.tables import metadata

run_env(context, metadata)
