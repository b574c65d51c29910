"""The fare service's configuration, from the environment."""

from pydantic import Field

from saga_log.runtime import RuntimeSettings


class Settings(RuntimeSettings):
    database_url: str = Field(
        default="postgresql://postgres@127.0.0.1:5432/fares",
        validation_alias="FARE_DATABASE_URL",
    )
    http_port: int = Field(default=8003, validation_alias="FARE_HTTP_PORT")
