"""Settings every service shares, read from the environment."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import Faults, FieldCipher, demo_faults
from saga_log.runtime.fault_plan import FaultPlan
from saga_log.runtime.retry import RetryPolicy


class RuntimeSettings(BaseSettings):
    """Common configuration; each service adds its database URL and HTTP port."""

    model_config = SettingsConfigDict(env_prefix="SAGA_", extra="ignore", populate_by_name=True)

    #: Each service's own settings read it from <SERVICE>_AMQP_URL first: every service
    #: connects as its own broker user (contracts.access).
    amqp_url: str = Field(default="amqp://guest:guest@127.0.0.1:5672/", validation_alias="AMQP_URL")
    #: Prepended to every broker user's name (tests give each run users of its own).
    broker_user_prefix: str = ""
    #: Each service's own settings name these after itself (ORDER_DATABASE_URL, ...).
    database_url: str = ""
    #: The migrations' URL (the schema owner's); empty: DATABASE_URL's.
    migration_database_url: str = ""
    http_port: int = 0
    faults: str = "off"
    #: JSON, see saga_log.faults.FaultPlan (transient failures, delays, crashes).
    fault_plan_json: str = Field(default="", validation_alias="SAGA_FAULT_PLAN")
    #: Per work queue retry budgets overriding retry_max_attempts, JSON {"queue": n}.
    retry_budgets: dict[str, int] = {}
    #: Where the HTTP server listens: this machine only, unless told otherwise (the
    #: containers listen on 0.0.0.0 inside their own network namespace).
    http_host: str = "127.0.0.1"
    #: When set, every HTTP route but /health asks for it (saga_log.runtime.http_guard).
    http_token: SecretStr = Field(default=SecretStr(""), validation_alias="SAGA_HTTP_TOKEN")
    log_level: str = "INFO"
    prefetch: int = Field(default=50, ge=1)
    #: At most this many deliveries share one transaction (1: one transaction each).
    batch_size: int = Field(default=50, ge=1)
    #: Seconds at most a consumer that publishes nothing (the history, the success
    #: reactions) waits to fill a batch: nothing downstream waits for it, and at low load
    #: its transactions were a third of the database's (docs/performance.md). A full
    #: batch ends the wait. 0: never waits.
    linger: float = Field(default=0.5, ge=0, le=5)
    retry_first_delay: float = Field(default=2.0, ge=0)
    retry_backoff: float = Field(default=2.0, ge=1)
    retry_max_attempts: int = Field(default=3, ge=0)
    retry_max_delay: float = Field(default=8.0, ge=0)
    outbox_poll_interval: float = Field(default=1.0, gt=0)
    outbox_batch_size: int = Field(default=200, ge=1)
    #: Seconds a published outbox row is kept, and an inbox key (the dedup window).
    outbox_retention: float = Field(default=3600.0, gt=0)
    inbox_retention: float = Field(default=7 * 24 * 3600.0, gt=0)
    publish_timeout: float = Field(default=10.0, gt=0)
    #: A saga with no event for this long is cancelled (the sample: 10 s per task).
    step_timeout: float = Field(default=10.0, gt=0)
    #: A saga still running this long after it started is cancelled (the sample: 600 s).
    saga_deadline: float = Field(default=600.0, gt=0, validation_alias="SAGA_DEADLINE")
    deadline_check_interval: float = Field(default=1.0, gt=0)
    #: How long a starting service waits for its database and the broker before giving up.
    startup_timeout: float = Field(default=120.0, gt=0)
    #: The keys that seal secret fields, `id=base64[,id=base64...]` (contracts.secrets);
    #: only the services that read or write secret fields need them.
    field_keys: SecretStr = Field(default=SecretStr(""), validation_alias="SAGA_FIELD_KEYS")

    def retry_policy(self) -> RetryPolicy:
        return RetryPolicy(
            first_delay=self.retry_first_delay,
            backoff=self.retry_backoff,
            max_attempts=self.retry_max_attempts,
            max_delay=self.retry_max_delay,
        )

    def fault_plan(self) -> Faults:
        return demo_faults(self.faults)

    def field_cipher(self) -> FieldCipher:
        """The cipher of secret fields; a clear error when no key is configured."""
        return FieldCipher.from_setting(self.field_keys.get_secret_value())

    def field_cipher_or_none(self) -> FieldCipher | None:
        """The cipher of secret fields, if this service holds the keys."""
        return self.field_cipher() if self.field_keys.get_secret_value().strip() else None

    def injected_faults(self) -> FaultPlan:
        return FaultPlan.parse(self.fault_plan_json)
