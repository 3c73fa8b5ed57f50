check -c @CASES@/antivirus-degraded.yml @FIX@/antivirus.events
