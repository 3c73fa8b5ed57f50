check -c @CASES@/xmilter.yml @FIX@/test-tokens.events @FIX@/no-such-file.events @FIX@/malformed.events @FIX@/test-tokens.events
