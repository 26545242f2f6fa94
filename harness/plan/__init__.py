"""The plan: from an inspected model and a strategy to a placement, engine flags and predicted memory."""
