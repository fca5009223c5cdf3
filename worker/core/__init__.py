"""The pure core: WispHub rows become desired BQN entries, diffs and plans. No network,
Redis, RQ, Flask or environment here: everything comes in as arguments."""
