check -c @CASES@/xmilter.yml @FIX@/replay.events
