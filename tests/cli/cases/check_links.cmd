check -c @CASES@/links.yml @FIX@/links.events
