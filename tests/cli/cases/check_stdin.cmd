check -c @CASES@/xmilter.yml -
