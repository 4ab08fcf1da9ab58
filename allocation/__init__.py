"""The allocation service: allocates customer order lines to batches of stock."""
