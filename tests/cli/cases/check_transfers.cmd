check -c @CASES@/xmilter.yml @FIX@/transfers.events
