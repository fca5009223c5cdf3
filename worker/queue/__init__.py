"""The queue side: Redis state (claims, footprints, history, runs, metrics), queueing,
what every job does around its work, the two passes and the scheduler."""
