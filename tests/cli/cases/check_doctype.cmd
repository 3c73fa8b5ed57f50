check -c @CASES@/xmilter.yml @FIX@/doctype.events
