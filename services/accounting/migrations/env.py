from alembic import context

from saga_log.runtime import run_env
from services.accounting.tables import metadata

run_env(context, metadata)
