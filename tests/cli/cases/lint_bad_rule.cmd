lint -c @CASES@/bad-rule.yml
