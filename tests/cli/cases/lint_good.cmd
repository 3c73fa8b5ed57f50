lint -c @CASES@/xmilter.yml
