quarantine show -c @CASES@/xmilter.yml abc
