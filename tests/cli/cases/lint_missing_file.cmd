lint -c @CASES@/no-such.yml
