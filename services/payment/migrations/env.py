from alembic import context

from saga_log.migrations import run_env
from services.payment.tables import metadata

run_env(context, metadata)
