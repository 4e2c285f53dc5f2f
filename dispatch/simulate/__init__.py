"""The town simulator: a generated or loaded town, its leaders on phones, incidents at a rate."""
