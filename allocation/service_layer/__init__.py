"""The service layer: the message bus, its handlers and the unit of work they run in."""
