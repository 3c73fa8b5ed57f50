check -c @CASES@/antivirus.yml @FIX@/antivirus.events
