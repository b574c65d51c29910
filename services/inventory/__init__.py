"""The inventory service: ReserveInventory and its compensation, ReleaseInventory."""
