quarantine list -c @CASES@/xmilter.yml spam
