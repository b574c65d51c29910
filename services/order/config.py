"""The order service's configuration, from the environment."""

from pydantic import AliasChoices, Field

from saga_log.runtime import RuntimeSettings


class Settings(RuntimeSettings):
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/orders",
        validation_alias="ORDER_DATABASE_URL",
    )
    #: The schema owner's URL, for the migrations at start; the service then runs as
    #: DATABASE_URL's role, which may only read and write rows (tools.database).
    migration_database_url: str = Field(default="", validation_alias="ORDER_MIGRATION_DATABASE_URL")
    amqp_url: str = Field(
        default="amqp://order@127.0.0.1:5672/",
        validation_alias=AliasChoices("ORDER_AMQP_URL", "AMQP_URL"),
    )
    http_port: int = Field(default=8000, validation_alias="ORDER_HTTP_PORT")
