"""The cached call types: one module each, peers behind one protocol (`base.py`), listed in
`registry.py`, from which the routes, `cache.call_types` and the metric labels come."""
