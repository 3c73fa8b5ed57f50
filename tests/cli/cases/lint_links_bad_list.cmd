lint -c @CASES@/links-bad.yml
