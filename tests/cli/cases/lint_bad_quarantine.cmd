lint -c @CASES@/bad-quarantine.yml
