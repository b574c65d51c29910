"""The accounting service's configuration, from the environment."""

from pydantic import Field

from saga_log.runtime import RuntimeSettings


class Settings(RuntimeSettings):
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/accounting",
        validation_alias="ACCOUNTING_DATABASE_URL",
    )
    http_port: int = Field(default=8004, validation_alias="ACCOUNTING_HTTP_PORT")
