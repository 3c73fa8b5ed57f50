check -c @CASES@/xmilter.yml @FIX@/chat.events
