check -c @CASES@/xmilter.yml @FIX@/malformed.events
