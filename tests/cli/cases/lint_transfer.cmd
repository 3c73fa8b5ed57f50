lint -c @CASES@/transfer.yml
