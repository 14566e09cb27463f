"""Device drivers of the hall daemon, one per device family; the contract is in ``base``."""
