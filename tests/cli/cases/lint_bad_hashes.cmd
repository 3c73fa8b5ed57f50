lint -c @CASES@/bad-hashes.yml
