lint -c @CASES@/bad-filter.yml
