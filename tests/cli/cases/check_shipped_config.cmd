check -c @SRC@/etc/xmilter.yml @FIX@/test-tokens.events
