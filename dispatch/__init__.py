"""The dispatch server: incidents in, covering teams alerted, the 1-3-5 chain on record."""
