"""The sync engine: read both sides, work out the difference, apply it with bounded
concurrency. Knows the API clients and the core; state it keeps comes in through protocols."""
