"""Whether each team's leader can be reached now, proven by test alerts before an incident."""
