"""The audit trail of changes, and the hash chain of the incident event log."""
