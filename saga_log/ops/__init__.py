"""The operator and demo tools: start a saga and follow it, read the history, redrive,
replay or discard held messages. They talk to RabbitMQ and the history's API only."""
