quarantine list -c @CASES@/bad-quarantine.yml
