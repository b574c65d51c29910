"""The order service: ProcessOrder, UpdateOrderStatus and the end of every saga."""
