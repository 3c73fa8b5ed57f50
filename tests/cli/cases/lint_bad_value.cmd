lint -c @CASES@/bad-value.yml
