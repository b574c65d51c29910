"""The payment service: ProcessPayment and its compensation, ProcessRefund."""
