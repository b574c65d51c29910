"""The saga history's configuration, from the environment."""

from pydantic import AliasChoices, Field

from saga_log.runtime import RuntimeSettings


class Settings(RuntimeSettings):
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/saga_log",
        validation_alias="SAGA_LOG_DATABASE_URL",
    )
    #: The schema owner's URL, for the migrations at start; the service then runs as
    #: DATABASE_URL's role, which may only read and write rows (tools.database).
    migration_database_url: str = Field(
        default="", validation_alias="SAGA_LOG_MIGRATION_DATABASE_URL"
    )
    amqp_url: str = Field(
        default="amqp://saga_log@127.0.0.1:5672/",
        validation_alias=AliasChoices("SAGA_LOG_AMQP_URL", "AMQP_URL"),
    )
    http_port: int = Field(default=8080, validation_alias="SAGA_LOG_HTTP_PORT")
