check -c @CASES@/xmilter.yml @FIX@/bad-envelope.events
