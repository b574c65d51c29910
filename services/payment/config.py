"""The payment service's configuration, from the environment."""

from pydantic import AliasChoices, Field

from saga_log.runtime import RuntimeSettings


class Settings(RuntimeSettings):
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/payments",
        validation_alias="PAYMENT_DATABASE_URL",
    )
    #: The schema owner's URL, for the migrations at start; the service then runs as
    #: DATABASE_URL's role, which may only read and write rows (tools.database).
    migration_database_url: str = Field(
        default="", validation_alias="PAYMENT_MIGRATION_DATABASE_URL"
    )
    amqp_url: str = Field(
        default="amqp://payment@127.0.0.1:5672/",
        validation_alias=AliasChoices("PAYMENT_AMQP_URL", "AMQP_URL"),
    )
    http_port: int = Field(default=8001, validation_alias="PAYMENT_HTTP_PORT")
