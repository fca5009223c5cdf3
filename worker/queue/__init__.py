"""The queue side: Redis state (claims, footprints, history, runs, metrics), queueing,
what every job does around its work, the scheduler and the worker class."""
