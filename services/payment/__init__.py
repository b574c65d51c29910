"""The payment service: both sagas' payments. Orders: ProcessPayment and its compensation
ProcessRefund. Fares: ChargeFare and its compensation RefundFare."""
